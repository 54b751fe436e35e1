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
# LFW View 1 recipe: where the LFW archive and pairs are, and where to unpack/align them.
LFW_SOURCE ?= ../shared/data/lfw
LFW_WORK ?= data/lfw
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-fast lfw-view1 clean

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

# Align LFW (resumable), then train and evaluate with flags/lfw_view1.cfg.
lfw-view1: $(STAMP)
	mkdir -p $(LFW_WORK)
	test -d $(LFW_WORK)/lfw-deepfunneled || tar xzf $(LFW_SOURCE)/lfw-deepfunneled.tgz -C $(LFW_WORK)
	cp $(LFW_SOURCE)/pairsDevTest.txt $(LFW_SOURCE)/pairsDevTrain.txt $(LFW_WORK)/
	$(PY) tools/align_dataset.py --input_dir=$(LFW_WORK)/lfw-deepfunneled --output_dir=$(LFW_WORK)/aligned_112
	$(PY) -m enas_face.main --flagfile=flags/lfw_view1.cfg

clean:
	rm -rf runs build *.egg-info .pytest_cache
