# One-command set-up. A torch that is already installed (a CUDA build, say) is left alone;
# with none, the CPU build torch==2.13.0 is installed instead of the default CUDA download.
PYTHON ?= python3
TORCH := $(shell $(PYTHON) -c "import torch" >/dev/null 2>&1 || echo "torch==2.13.0")

.PHONY: install install-test demo test lint

install:
	$(PYTHON) -m pip install $(TORCH) -e .

install-test:
	$(PYTHON) -m pip install $(TORCH) -e ".[test]"

demo: install
	$(PYTHON) -m entropy_elbo demo

test: install-test
	$(PYTHON) -m ruff check entropy_elbo tests benchmarks examples
	$(PYTHON) -m pytest
