# brainnet: `make demo` runs the notebooks on nsd-mini, `make test` runs the test suite.
# Both create the virtual environment (.venv) when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
# extra papermill parameters for the demo, e.g. DEMO_PARAMS='-p NSD_DIR=/data/nsd -p ALG_DIR=/data/alg23'
DEMO_PARAMS ?=
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[test,ridge,tune]'
	@touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m brainnet.cli demo --out $(DEMO_OUT) $(DEMO_PARAMS)

test: $(VENV)/.installed
	$(PY) -m pytest tests $(PYTEST_ARGS)
	$(PY) -m pytest --nbval-lax -p no:cacheprovider notebooks $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_cache.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
