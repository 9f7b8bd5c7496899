# Two entry points on a fresh machine:  `make demo`  and  `make test`  (each sets up .venv first).
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mpq-gym-installed

.PHONY: setup demo test clean-cache

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, on its own: pip's local constraints (if any) pick the build that is on disk
	$(PY) -m pip install --quiet "torch>=2.4" "torchvision>=0.19"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Main job on the embedded default: EfficientNet-Lite0 on the ImageNet sample (MPQ_GYM_DATA,
# ../shared/data, or downloaded when online; DigitsCNN when there is none): a PPO agent and the
# baselines at one BOPs budget, the comparison table and the Pareto plot (runs/demo/).
demo: setup
	$(PY) -m mpq_gym demo --out runs/demo

test: setup
	$(PY) -m pytest -q

clean-cache:
	rm -rf "$${MPQ_GYM_CACHE:-$$HOME/.cache/mpq_gym}"
