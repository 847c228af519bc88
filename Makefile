# The two README commands. Both run the idempotent set-up first (seconds once installed).
#   make main   set-up, mini COCO dataset, train + evaluate RetinaNet-ShuffleNetV2 on CPU
#   make test   set-up, then the test suite
PY := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin/python,$(CURDIR)/.venv/bin/python)
PYTEST_ARGS ?=

.PHONY: setup test main
setup:
	bash tools/setup.sh

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

main: setup
	$(PY) tools/main_job.py
