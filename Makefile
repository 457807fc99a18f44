# brainnet: `make demo` runs the notebooks on nsd-mini, `make test` runs the test suite and the notebooks.
# Both create the virtual environment (.venv, every extra: `.[all]`) when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
# extra papermill parameters for the demo, e.g. DEMO_PARAMS='-p NSD_DIR=/data/nsd -p ALG_DIR=/data/alg23'
DEMO_PARAMS ?=
PYTEST_ARGS ?=
# pytest-xdist workers (one per core; the suite is balanced for 2, see conftest.py)
WORKERS ?= 2
# the notebooks as nbval runs them: papermill's injected parameters (tiny nsd-mini in its own data home,
# short training); what they compute is checked by the tests on the planted truth
NBVAL_DIR ?= build/nbval
NBVAL_PRESET ?= tiny
NBVAL_PARAMS ?= EPOCHS=1 RUNNER=local N_RANDOM=0
XDIST := -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: venv demo test test-fast notebooks-for-nbval lint bench device-wheels clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[all]'
	@touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m brainnet.cli demo --out $(DEMO_OUT) $(DEMO_PARAMS)

# The test files and the notebooks in one pytest run on $(WORKERS) workers: the acceptance fits start
# first on both workers, everything else fills in beside them (conftest.py). pytest's exit status is
# make's: any failure, or no test collected (5), fails the target.
test: $(VENV)/.installed notebooks-for-nbval
	$(PY) -m pytest tests $(NBVAL_DIR) --nbval-lax -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(PY) -m pytest tests -m "not slow" -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# copies of notebooks/*.ipynb with their parameters set by papermill (nothing executed here)
notebooks-for-nbval: $(VENV)/.installed
	rm -rf $(NBVAL_DIR)
	$(PY) tests/nbval_notebooks.py notebooks $(NBVAL_DIR) --preset $(NBVAL_PRESET) $(addprefix --param ,$(NBVAL_PARAMS))

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# wheels the GPU machine lacks (no registry there), into .whl/ for benchmarks/device_check.py --wheels .whl
device-wheels: $(VENV)/.installed
	PYTHON=$(PY) scripts/device_wheels.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_cache.py

clean:
	rm -rf $(DEMO_OUT) build .pytest_cache
