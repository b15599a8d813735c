# Quick start: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench golden fuzz clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/run.py

# Refresh tests/golden/ (the IR after each -O2 pass) after an intended change to a pass.
golden: setup
	$(PY) scripts/refresh_golden.py

# Differential campaign: random residual networks, interpreter vs ONNX Runtime (both flavours) vs TVM llvm.
fuzz: setup
	$(PY) benchmarks/differential.py --minutes 60

clean:
	rm -rf $(VENV) build *.egg-info resdsl-dump
