# One-command set-up. A torch that is already installed (a CUDA build, say) is left alone;
# with none, the CPU build torch==2.13.0 is installed instead of the default CUDA download.
PYTHON ?= python3
TORCH := $(shell $(PYTHON) -c "import torch" >/dev/null 2>&1 || echo "torch==2.13.0")

.PHONY: install install-test demo test test-all lint reproduce-quick

install:
	$(PYTHON) -m pip install $(TORCH) -e .

install-test:
	$(PYTHON) -m pip install $(TORCH) -e ".[test]"

# installs only when the installed entropy_elbo (-I: not the source folder itself) and torch are not importable yet, so a second `make demo` is the demo alone (< 30 s of CPU)
demo: $(if $(shell $(PYTHON) -I -c "import entropy_elbo.cli, torch" >/dev/null 2>&1 && echo ok),,install)
	$(PYTHON) -m entropy_elbo demo

# What CI runs: everything but the checks marked slow (the example scripts, long training runs).
test: install-test
	$(PYTHON) -m ruff check entropy_elbo tests benchmarks examples
	$(PYTHON) -m pytest -m "not slow"

test-all: install-test
	$(PYTHON) -m ruff check entropy_elbo tests benchmarks examples
	$(PYTHON) -m pytest

# Every claim of docs/reproduction.md's summary table at the figure scripts' quick scales over 5 seeds, in two worker
# processes of one torch thread: one PASS/FAIL line per claim, exit 1 on a FAIL (docs/reproduction.md: time taken).
reproduce-quick:
	OMP_NUM_THREADS=1 $(PYTHON) examples/reproduce.py --quick --seeds 5 --workers 2
