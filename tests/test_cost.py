import json
import subprocess
import sys

import numpy as np
import pytest

from mpq_gym.config import Candidate, uniform_config
from mpq_gym.cost import CostModel, LookupTableCost, measure_cpu_latency_lut
from mpq_gym.cost.models import mac_energy_pj
from mpq_gym.errors import ConfigError
from mpq_gym.quant.graph import quantizable_layers
from mpq_gym.workloads import get_workload


@pytest.fixture(scope="module")
def resnet50_costs():
    workload = get_workload("resnet50", random_weights=True)  # structure only
    layers = quantizable_layers(workload.model, workload.example_input())
    return CostModel.for_model(layers, workload.model)


def _uniform(model, w, a):
    return uniform_config([l.name for l in model.layers], Candidate(w, a))


def test_resnet50_fp32_size_is_25_557_m_params_times_32(resnet50_costs):
    assert resnet50_costs.total_params == 25_557_032
    assert resnet50_costs.cost(_uniform(resnet50_costs, 32, 32), "size_bits") == 25_557_032 * 32


def test_bops_follow_the_aimet_definition(resnet50_costs):
    macs = sum(l.macs for l in resnet50_costs.layers)
    assert resnet50_costs.cost(_uniform(resnet50_costs, 8, 8), "bops") == macs * 64
    costs = resnet50_costs.costs(_uniform(resnet50_costs, 4, 8))
    assert costs["bops_ratio"] == pytest.approx(0.25)  # W4A8 vs the W8A16 reference


def test_every_metric_falls_with_bits(resnet50_costs):
    wide, narrow = resnet50_costs.costs(_uniform(resnet50_costs, 8, 8)), resnet50_costs.costs(_uniform(resnet50_costs, 4, 4))
    for metric in ("size_bits", "bops", "latency", "energy"):
        assert narrow[metric] < wide[metric], metric


def test_mac_energy_constants_and_interpolation():
    for bits, pj in {32: 4.6, 16: 1.1, 8: 0.2, 4: 0.05, 2: 0.01}.items():
        assert mac_energy_pj(bits, bits) == pytest.approx(pj)
    assert 0.05 < mac_energy_pj(6, 6) < 0.2
    assert mac_energy_pj(8, 16) == pytest.approx(mac_energy_pj(16, 8))


def test_tables_sum_to_totals(resnet50_costs):
    candidates = [Candidate(4, 8), Candidate(8, 8), Candidate(8, 16)]
    rng = np.random.default_rng(0)
    choices = rng.integers(3, size=len(resnet50_costs.layers))
    config = {l.name: candidates[c] for l, c in zip(resnet50_costs.layers, choices)}
    for metric in ("size_bits", "bops", "energy", "latency"):
        table = resnet50_costs.table(candidates, metric)
        total = table[np.arange(len(choices)), choices].sum() + resnet50_costs.fixed[metric]
        assert total == pytest.approx(resnet50_costs.cost(config, metric))


def test_lookup_table_roundtrip_and_validation(tmp_path, digits):
    layers = quantizable_layers(digits.model, digits.example_input())
    lut = measure_cpu_latency_lut(digits.model, layers, repeats=3)
    assert lut.table.shape == (len(layers), 32, 32) and (lut.table > 0).all()
    path = tmp_path / "lut.npy"
    lut.save(path)
    loaded = LookupTableCost.load(path, layers)
    model = CostModel(layers, lut=loaded)
    assert model.cost(uniform_config([l.name for l in layers], Candidate(8, 8)), "lut") == pytest.approx(
        lut.table[:, 7, 7].sum())
    np.save(tmp_path / "bad.npy", np.ones((len(layers) + 1, 8, 8)))
    with pytest.raises(ConfigError, match="expected"):
        LookupTableCost.load(tmp_path / "bad.npy", layers)
    small = LookupTableCost(np.ones((len(layers), 8, 8)), layers)
    with pytest.raises(ConfigError, match="no cell for W8A16"):
        small(layers[0], 8, 16)


def test_cost_cli_prints_every_metric():
    proc = subprocess.run([sys.executable, "-m", "mpq_gym.cost", "--workload", "resnet18", "--random-weights",
                           "--config", "uniform:W4A8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"params", "macs", "size_bits", "bops", "latency", "energy"} <= result.keys()
    assert result["bops_ratio"] == pytest.approx(0.25)
