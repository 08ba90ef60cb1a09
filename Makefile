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
	$(MAKE) --no-print-directory typecheck-trt trt-bindings
	$(BIN)/python -m pytest -q tests

# The main job on the shipped model, offline on CPU (a few minutes): export, INT8, AP table, annotated
# pictures and video, latency plot, TensorRT build attempt. Everything lands in $(DEMO_OUT)/.
DEMO_OUT ?= demo_out
demo: $(STAMP)
	$(BIN)/detnet-trt demo --out $(DEMO_OUT) --force

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache

# --- TensorRT layer without TensorRT (../shared/trt-api, see its README) ----------------------
# typecheck-trt: mypy over the TensorRT/pycuda code against the stubs of every TensorRT version.
# trt-bindings: the real bindings of every version over stand-in native libraries, importable
# (PYTHONPATH=.cache/trt-api/<version>/runtime), built once (~20 s a version) for tests/test_engine_compat.py.
TRT_API ?= ../shared/trt-api
TRT_CACHE := .cache/trt-api
TRT_CODE := detnet_trt/engine detnet_trt/plugins.py

.PHONY: typecheck-trt trt-bindings

typecheck-trt: $(STAMP)
	@test -d $(TRT_API)/stubs || { echo "typecheck-trt: $(TRT_API)/stubs not found"; exit 1; }
	@for v in $(TRT_API)/stubs/*/; do n=$$(basename $$v); echo "mypy: TensorRT $$n"; \
	  MYPYPATH=$$v $(BIN)/python -m mypy --config-file mypy.ini --cache-dir .mypy_cache/trt-$$n $(TRT_CODE) || exit 1; done

trt-bindings: $(TRT_CACHE)/.stamp

$(TRT_CACHE)/.stamp: $(TRT_API)/make-stubs | $(STAMP)
	PYTHON=$(abspath $(BIN)/python) $(TRT_API)/make-stubs $(TRT_CACHE) 2>&1 | grep -v '^WARNING: Location' || true
	@for v in $(TRT_API)/stubs/*/; do test -d $(TRT_CACHE)/$$(basename $$v)/runtime/tensorrt || { echo "trt-bindings: $$(basename $$v) missing"; exit 1; }; done
	touch $@
