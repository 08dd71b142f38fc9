# indad: make demo (PatchCore on MTD, prints the metrics table), make test (the test suite but the full-MTD runs),
# make test-full (every test: CI), make app (web app).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/datasets)
# Datasets: ../shared/datasets when it exists (CI and this workplace), else $INDAD_DATA_DIR or ./datasets.
export INDAD_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(CURDIR)/datasets)
# Torch's OpenMP threads sleep instead of spinning when idle: much faster on a shared machine.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test test-full lint app bench bench-highres accuracy robustness install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: these versions install from local wheels on this workplace (see DEVELOPERS.md).
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/indad run patchcore --dataset mtd

# indad vs anomalib (baseline A, its own venv: see ../shared/bench/anomalib_baseline.py), the backbone alone and
# issue 16's speed targets, each with its ratio measured in the same run (about 30 minutes).
bench: $(VENV)/.installed
	$(PY) benchmarks/bench.py

# Issue 27: PatchCore on 256 px tiles of a 2,448 x 2,048 image, today's tiled path against tile_features=image:
# scoring and fit before / after / ratio, and the seeds' accuracy table (benchmarks/highres_speed.py; hours on 2 cores).
bench-highres: $(VENV)/.installed
	$(PY) benchmarks/highres_speed.py $(HIGHRES_ARGS)

# Every method and PatchCore variant on every dataset (hours; --quick: the small sets): docs/accuracy.md.
accuracy: $(VENV)/.installed
	$(PY) benchmarks/accuracy.py $(ACCURACY_ARGS)

# Issue 26: every method fitted as is and with each lever (variation, photometric), scored on its test images
# unchanged and after each change a line sees (hours on a CPU; --quick: PatchCore, hazelnut_reduced, one seed;
# --few-shot: the curve against the number of good images): docs/accuracy.md, "Robustness".
robustness: $(VENV)/.installed
	$(PY) benchmarks/robustness.py $(ROBUSTNESS_ARGS)

app: $(VENV)/.installed
	$(VENV)/bin/indad app

# Two workers: the long tests (MTD, Ray, the browser) each leave a core partly idle (image decoding, metrics).
# make test runs the MTD tests on a fixed subset of MTD and leaves out their full-MTD runs (-m slow, minutes each);
# make test-full is make test with those too (.ci/run).
TEST_SELECT ?= -m "not slow"
test: lint
	$(PY) -m pytest -ra -n 2 --dist worksteal $(TEST_SELECT)

# ruff (lint and format) and mypy, configured in pyproject.toml.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-full:
	$(MAKE) test TEST_SELECT=

clean:
	rm -rf $(VENV) .pytest_cache results
