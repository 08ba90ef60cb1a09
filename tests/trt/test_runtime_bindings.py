"""The TensorRT names the runtime, the inspector and the layer profiler use, against the real
Python bindings of 8.6.1, 10.3.0, 10.16.1.11 and 11.4.0.106 (``.cache/trt-api/<version>/runtime``,
made by ``make trt-bindings``; one interpreter per version). mypy checks the typed calls against
each version's stubs; this checks the ones reached untyped (the inspector, ``context.profiler``,
the logger's threshold) and runs the package's own IProfiler subclass and process-wide logger on
the real classes. Nothing here needs a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")

_PROBE = r'''
import json, tensorrt as trt
from detnet_trt.trt.logger import get_logger
from detnet_trt.trt.profiler import layer_profiler

def has(owner, *names):
    obj = getattr(trt, owner)
    return all(hasattr(obj, n) for n in names)

out = {"version": trt.__version__, "names": {
    "ICudaEngine": has("ICudaEngine", "create_engine_inspector", "create_execution_context", "num_io_tensors",
                       "get_tensor_name", "get_tensor_mode", "get_tensor_dtype"),
    "EngineInspector": has("EngineInspector", "execution_context", "get_engine_information"),
    "LayerInformationFormat.JSON": has("LayerInformationFormat", "JSON"),
    "IExecutionContext": has("IExecutionContext", "profiler", "enqueue_emits_profile", "set_input_shape",
                             "get_tensor_shape"),
    "Runtime": has("Runtime", "deserialize_cuda_engine", "DLA_core"),
    "TensorIOMode.INPUT": has("TensorIOMode", "INPUT"),
    "Logger": has("Logger", "VERBOSE", "WARNING", "min_severity"),
    "init_libnvinfer_plugins": hasattr(trt, "init_libnvinfer_plugins"),
    "nptype": hasattr(trt, "nptype"),
}}
p = layer_profiler()
assert isinstance(p, trt.IProfiler)
p.report_layer_time("conv", 0.5)
p.report_layer_time("conv", 0.25)
out["profiler_times"] = p.times
a = get_logger()
b = get_logger(verbose=True)
out["one_logger"] = a is b and isinstance(a, trt.Logger)
out["verbose"] = a.min_severity == trt.Logger.VERBOSE
print("PROBE" + json.dumps(out))
'''


@pytest.mark.parametrize("version", VERSIONS)
def test_runtime_names_and_classes_on_the_real_bindings(version: str) -> None:
    runtime = ROOT / ".cache" / "trt-api" / version / "runtime"
    if not (runtime / "tensorrt").is_dir():
        pytest.skip(f"TensorRT {version} bindings not cached: run `make trt-bindings`")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(runtime), str(ROOT)]))
    res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    probe = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("PROBE"))[len("PROBE"):])
    assert probe["version"].startswith(version.rsplit(".", 1)[0] if version.count(".") > 2 else version)
    missing = [name for name, ok in probe["names"].items() if not ok]
    assert not missing, f"TensorRT {version} lacks {missing}"
    assert probe["profiler_times"] == {"conv": [0.5, 0.25]}
    assert probe["one_logger"] and probe["verbose"]
