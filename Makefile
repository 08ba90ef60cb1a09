# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0
# pytest-xdist workers for `make test` (one per core of the 2-core CI machine); each test file runs whole on one worker,
# so its module fixtures (the two-stage exports) are built once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2

.PHONY: test demo setup clean lint

setup: $(STAMP)

# torch first: a pinned CPU wheel, so that resolving `torch` below installs nothing more.
$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(MAKE) --no-print-directory lint typecheck trt-bindings
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# ruff (config: ruff.toml) over everything Python in the repository.
lint: $(STAMP)
	$(BIN)/ruff check --no-cache .

# The main job on the shipped model, offline on CPU (a few minutes): export, INT8, AP table, annotated
# pictures and video, latency plot, TensorRT build attempt. Everything lands in $(DEMO_OUT)/.
DEMO_OUT ?= demo_out
demo: $(STAMP)
	$(BIN)/detnet-trt demo --out $(DEMO_OUT) --force

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache

# --- TensorRT layer without TensorRT (tools/trt_api.py, see tools/README.md) ------------------
# trt-bindings: for every version in TRT_VERSIONS, $(TRT_CACHE)/<version>/stubs (type stubs of the real
# bindings) and $(TRT_CACHE)/<version>/runtime (the real bindings over stand-in native libraries,
# importable with PYTHONPATH=...; used by tests/trt/test_compat.py). Built once (~20 s in all, PyPI
# needed), then again only when tools/trt_api.py or the version list changes.
# typecheck: mypy over the whole package (config: mypy.ini) once per version, against its stubs: the
# TensorRT layer meets the real API of each version and the rest of the package is checked with it.
TRT_VERSIONS := 8.6.1 10.3.0 10.16.1.11 11.4.0.106
TRT_CACHE := .cache/trt-api

.PHONY: typecheck trt-bindings

typecheck: $(STAMP) $(TRT_CACHE)/.stamp
	@for v in $(TRT_VERSIONS); do echo "mypy: detnet_trt against TensorRT $$v"; \
	  MYPYPATH=$(TRT_CACHE)/$$v/stubs $(BIN)/python -m mypy --config-file mypy.ini --cache-dir .mypy_cache/all detnet_trt || exit 1; done


trt-bindings: $(TRT_CACHE)/.stamp

# The tool keeps a stamp per version (its own hash) and rewrites this one on success; on a Makefile
# edit that leaves TRT_VERSIONS as it was, it only says "up to date".
$(TRT_CACHE)/.stamp: tools/trt_api.py Makefile | $(STAMP)
	$(BIN)/python tools/trt_api.py --out $(TRT_CACHE) --versions $(TRT_VERSIONS)
