# make demo  - set up .venv and run the whole pipeline on the synthetic-faces default
# make test  - set up .venv and run the test suite
# TF_EXTRA=gpu make setup  installs the GPU build of TensorFlow instead of the CPU one.
PYTHON ?= python3
VENV ?= .venv
TF_EXTRA ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(TF_EXTRA)
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-fast clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(PY) tools/run_demo.py --run_dir=$(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf runs build *.egg-info .pytest_cache
