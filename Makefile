# `make demo` and `make test` work on a fresh machine: they make .venv, install
# the pinned packages, fetch the data, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: setup data demo test bench lint clean
.DEFAULT_GOAL := help

help:
	@echo "make demo   - set up, then train seed 000's 784-784-784 autoencoder on Fashion-MNIST into runs/demo"
	@echo "make test   - set up, then run the test suite"
	@echo "make setup  - .venv with pinned packages (requirements.lock) and the datasets"
	@echo "make bench  - speed benchmarks (docs/PERFORMANCE.md)"
	@echo "make lint   - ruff (check + format --check), import-linter layers, mypy"

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP) data
	@bash scripts/install-system.sh

data: $(STAMP)
	@PY=$(PY) bash scripts/fetch-data.sh

demo: setup
	$(VENV)/bin/aelab train configs/demo.yaml --out runs/demo --overwrite
	$(VENV)/bin/aelab explore runs/demo
	@echo "demo run: runs/demo (open runs/demo/report.html and runs/demo/explore.html)"

# The whole suite in the precision `train.precision: auto` picks here, then the tests marked `precision`
# (tests/conftest.py) again in the other one: bf16-mixed on CPUs without native bf16, fp32 on those with it.
OTHER_PRECISION = $(PY) -c "from aelab.train.precision import cpu_has_native_bf16 as b; print('fp32' if b() else 'bf16-mixed')"
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)
	AELAB_PRECISION=$$($(OTHER_PRECISION)) $(PY) -m pytest -m precision -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/aelab bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
