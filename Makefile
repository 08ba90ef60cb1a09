# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0

.PHONY: test demo setup clean

setup: $(STAMP)

# torch first: a pinned CPU wheel, so that resolving `torch` below installs nothing more.
$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	@echo "make demo arrives with the training/demo issue (#9); nothing to run yet." && exit 1

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache
