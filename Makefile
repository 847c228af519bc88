# The two README commands. Both run the idempotent set-up first (seconds once installed).
#   make main   set-up, mini COCO dataset, train + evaluate RetinaNet-ShuffleNetV2 on CPU
#   make test   set-up, lint (ruff + mypy), the full test suite on the pinned stack and, beside it, the compatibility
#               suite on the OpenMMLab-standard stack (torch 2.1.2 + torchvision 0.16.2, numpy 1.x, mmpretrain)
# Parts: make test-pinned, make test-openmmlab, make lint (ruff + mypy, configured in pyproject.toml),
#        make test-fast (lint, then the pinned suite without the tests marked `slow`).
PY := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin/python,$(CURDIR)/.venv/bin/python)
PY_OPENMMLAB := $(CURDIR)/.venv-openmmlab/bin/python
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist), one test module per worker at a time (module fixtures built once);
# PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
# Each worker's torch / OpenMP on one thread: the workers share the cores instead of spinning against each other.
TEST_ENV = $(if $(filter 0,$(PYTEST_WORKERS)),,OMP_NUM_THREADS=1)

.PHONY: setup setup-openmmlab lint test test-fast test-pinned test-openmmlab main
setup:
	bash tools/setup.sh

setup-openmmlab:
	STACK=openmmlab bash tools/setup.sh

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

test-pinned: lint
	$(TEST_ENV) $(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

# The pinned suite without the long tests (marked `slow`, pyproject.toml).
test-fast: lint
	$(TEST_ENV) $(PY) -m pytest tests -m "not slow" $(XDIST) $(PYTEST_ARGS)

# The compatibility suite: the tests marked `compat` (pyproject.toml), on the openmmlab stack. Only the modules that
# hold such tests are collected (the others import deploy packages - ncnn, pnnx, mmdeploy - that stack does not have).
COMPAT_MODULES = $(shell grep -rl --include='test_*.py' 'pytest.mark.compat' tests)
test-openmmlab: setup-openmmlab
	$(TEST_ENV) SHUFFLENET_DET_REQUIRE_PEERS=1 $(PY_OPENMMLAB) -m pytest $(COMPAT_MODULES) -m compat $(XDIST) $(PYTEST_ARGS)

# The two suites run side by side (each on its PYTEST_WORKERS workers); each one's output is printed when it ends.
test:
	$(MAKE) -j2 --output-sync=target test-pinned test-openmmlab

main: setup
	$(PY) tools/main_job.py
