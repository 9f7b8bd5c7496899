"""Number formats: pot / flint grids, ANT's per-tensor choice, OliVe's outlier-victim pairs, and their use
as a candidate dimension."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpq_gym.candidates import parse_candidates
from mpq_gym.config import Candidate, config_from_mapping, config_to_json, parse_candidate, uniform_config
from mpq_gym.errors import ConfigError
from mpq_gym.evaluate.exact import build_quantized_model
from mpq_gym.quant.formats import (abfloat, activation_quantizer, grid_levels, grid_round, magnitudes, olive_round,
                                   tensor_sqnr_db, weight_quantizer)
from mpq_gym.quant.quantizers import QuantSettings


def test_grids_match_their_definitions():
    assert [v * 16 for v in magnitudes("flint", 3)] == [0, 1, 2, 3, 4, 6, 8, 16]
    assert [v * 64 for v in magnitudes("flint", 4)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 24, 32, 64]
    assert [v * 64 for v in magnitudes("pot", 3)] == [0, 1, 2, 4, 8, 16, 32, 64]
    levels = grid_levels("flint", 4, signed=True)
    assert torch.equal(levels, -levels.flip(0)) and len(levels) == 15  # symmetric, 2^4 - 1 codes
    assert len(grid_levels("pot", 4, signed=False)) == 16


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-2, 2, allow_nan=False), min_size=1, max_size=40), st.sampled_from(["pot", "flint", "int"]))
def test_grid_round_is_nearest_level(values, fmt):
    levels = grid_levels(fmt, 4, signed=True)
    y = torch.tensor(values, dtype=torch.float32)
    q = grid_round(y, levels)
    brute = (y[:, None] - levels[None, :]).abs().min(dim=1).values
    assert torch.allclose((q - y).abs(), brute, atol=1e-6)


def test_olive_pairs_keep_the_outlier_and_zero_its_victim():
    y = torch.tensor([[0.3, 9.0, 2.2, -3.1, 20.0, 30.0, 200.0, 1.0]])
    assert olive_round(y, 4).tolist() == [[0.0, 8.0, 2.0, -3.0, 0.0, 32.0, 96.0, 0.0]]
    assert sorted(set(abfloat(torch.arange(8.0, 120.0), 4).tolist())) == [8, 12, 16, 24, 32, 48, 64, 96]
    odd = torch.tensor([[1.2, 40.0, 5.0]])  # an odd last dimension: the last value is paired with zero
    assert olive_round(odd, 4).tolist() == [[0.0, 32.0, 5.0]]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-60, 60, allow_nan=False), min_size=2, max_size=40).filter(lambda v: len(v) % 2 == 0))
def test_olive_pairs_hold_at_most_one_nonzero_when_an_outlier_is_present(values):
    y = torch.tensor(values).reshape(-1, 2)
    q = olive_round(y, 4)
    outlier = (y.abs() > 7.5).any(dim=1)
    assert ((q[outlier] != 0).sum(dim=1) <= 1).all()
    assert torch.equal(q[~outlier], torch.round(y[~outlier]).clamp(-7, 7))


def test_ant_picks_the_type_with_least_error():
    torch.manual_seed(0)
    weights = {"gaussian": torch.randn(32, 64),
               "power_of_two": torch.sign(torch.randn(32, 64)) * 2.0 ** -torch.randint(0, 7, (32, 64)).float()}
    for name, w in weights.items():
        errors = {f: (weight_quantizer(w, 4, f)(w) - w).pow(2).sum().item() for f in ("int", "pot", "flint")}
        chosen = weight_quantizer(w, 4, "ant")
        assert errors[chosen.fmt] == pytest.approx(min(errors.values())), name
    assert weight_quantizer(weights["power_of_two"], 4, "ant").fmt == "pot"
    assert weight_quantizer(weights["gaussian"], 8, "ant").fmt == "int"


def test_olive_beats_int_on_activations_with_outlier_channels():
    torch.manual_seed(0)
    x = torch.randn(8, 16, 64)
    x[..., 5] *= 40  # a transformer-style outlier channel
    flat, pairs = x.reshape(-1), x.reshape(-1, 2)
    quality = {}
    for fmt in ("int", "olive"):
        q = activation_quantizer(flat, pairs, x.min().item(), x.max().item(), 4, fmt, QuantSettings())
        quality[fmt] = tensor_sqnr_db(x, q(x))
    assert quality["olive"] > quality["int"] + 3


def test_candidates_carry_a_format():
    assert parse_candidate("W4A8-ant") == Candidate(4, 8, "ant") and str(Candidate(4, 8, "olive")) == "W4A8-olive"
    assert parse_candidate("W4A8") == Candidate(4, 8) == (4, 8, "int")
    assert [str(c) for c in parse_candidates("W4A8,W8A8@int+ant")] == ["W4A8", "W4A8-ant", "W8A8", "W8A8-ant"]
    assert len(parse_candidates("hardware@int+olive")) == 6
    with pytest.raises(ConfigError, match="unknown number format"):
        parse_candidate("W4A8-fp4")
    with pytest.raises(ConfigError, match="unknown number format"):
        parse_candidates("hardware@int+posit")
    names = ["a", "b"]
    config = {"a": Candidate(4, 8, "olive"), "b": Candidate(8, 8)}
    assert config_to_json(config) == {"a": [4, 8, "olive"], "b": [8, 8]}
    assert config_from_mapping(config_to_json(config), names) == config


def test_quantized_model_switches_formats_and_reloads_them_from_cache(digits):
    qm = build_quantized_model(digits)
    x = digits.split("test").inputs[:64]
    outputs = {}
    for text in ("W4A4", "W4A4-olive", "W4A4-ant", "W4A4-flint", "W4A4-pot"):
        qm.set_config(uniform_config(qm.layer_names, parse_candidate(text)))
        outputs[text] = qm(x)
    assert not torch.allclose(outputs["W4A4"], outputs["W4A4-olive"])
    assert not torch.allclose(outputs["W4A4-pot"], outputs["W4A4-flint"])
    resolved = {qm.weight_quantizer(n, 4, "ant").fmt for n in qm.layer_names}
    assert resolved <= {"int", "pot", "flint"}
    again = build_quantized_model(digits)  # same cache key: quantizers come back from disk
    again.calibrate = lambda: pytest.fail("formats should load from the cache, not recalibrate")
    again.set_config(uniform_config(again.layer_names, parse_candidate("W4A4-olive")))
    assert torch.allclose(again(x), outputs["W4A4-olive"])


def test_formats_are_a_search_dimension(digits):
    from mpq_gym.baselines import ilp_search
    from mpq_gym.budget import Budget
    from mpq_gym.envs import MixedPrecisionEnv
    from mpq_gym.problem import Problem
    from mpq_gym.search import SearchContext
    problem = Problem(digits, "W2A4,W8A8@int+ant+olive", sensitivity_images=64, progress=False)
    assert [str(c) for c in problem.candidates][:3] == ["W2A4", "W2A4-ant", "W2A4-olive"]
    assert problem.sensitivity.sqnr_db.shape == (4, 6)
    choices = ilp_search(SearchContext(problem, Budget("bops", 0.3)))
    assert {c.fmt for c in problem.config(choices).values()} <= {"int", "ant", "olive"}
    env = MixedPrecisionEnv(problem=problem, budget=0.3)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(env.action_space.sample())
    assert all(len(v) in (2, 3) for v in info["config"].values())
