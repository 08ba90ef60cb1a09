"""TensorRTBackend without a GPU: what it reads from the sidecar, its checks, and the errors when
TensorRT or pycuda is missing. Inference itself is in the ``gpu`` tests (test_engine_gpu.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detnet_trt.core.errors import InputError, MissingDependencyError, ModelFileError
from detnet_trt.core.meta import ModelMeta
from detnet_trt.core.sidecar import EngineInfo, write_sidecar
from detnet_trt.runtime.backends import load_backend
from detnet_trt.runtime.backends.tensorrt import TensorRTBackend
from detnet_trt.trt import compat

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(tmp_path) -> Path:
    """An engine file (bytes TensorRT would refuse) with a real sidecar: enough for the CPU paths."""
    path = tmp_path / "m.engine"
    path.write_bytes(b"not a plan")
    write_sidecar(path, EngineInfo(
        meta=ModelMeta("detnet_tiny", ["a", "b", "c"], (128, 128), precision="fp16"),
        tensorrt_version="10.3.0", gpu_name="Orin", compute_capability=(8, 7), onnx_sha256="0" * 64,
        build={"batch": [2, 2, 4], "source": "m.onnx", "plugins": ["libx.so"]},
    ))
    return path


def test_load_backend_reads_the_sidecar(engine) -> None:
    backend = load_backend(engine)
    assert isinstance(backend, TensorRTBackend) and not backend.is_open
    assert backend.meta.precision == "fp16" and backend.meta.input_size == (128, 128)
    assert backend.max_batch == 4 and backend.min_batch == 2
    assert backend.plugins == ["libx.so"]  # the build's plugin libraries, loaded again at open
    assert backend.describe()["tensorrt"] == "10.3.0"


def test_batch_outside_the_profile(engine) -> None:
    with pytest.raises(InputError, match="above the engine's largest batch 4"):
        TensorRTBackend(engine, max_batch=8)
    backend = TensorRTBackend(engine)
    with pytest.raises(InputError, match="needs at least 2"):
        backend.validate(np.zeros((1, 3, 128, 128), np.uint8))
    with pytest.raises(InputError, match="at most 4"):
        backend.validate(np.zeros((5, 3, 128, 128), np.uint8))
    backend.validate(np.zeros((3, 3, 128, 128), np.uint8))


def test_engine_without_sidecar_is_refused(engine) -> None:
    os.unlink(str(engine) + ".json")
    with pytest.raises(ModelFileError, match="no metadata sidecar"):
        TensorRTBackend(engine)


def test_missing_engine(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="no such engine file"):
        TensorRTBackend(tmp_path / "none.engine")


@pytest.mark.skipif(compat.have_tensorrt(), reason="TensorRT is installed")
def test_open_without_tensorrt(engine) -> None:
    backend = TensorRTBackend(engine)
    with pytest.raises(compat.TensorRTMissingError, match="TensorRT is not installed, the TensorRT backend needs it"):
        backend.open()
    assert not backend.is_open
    backend.close()  # idempotent after a failed open


def test_open_with_tensorrt_but_without_pycuda(engine) -> None:
    """Real TensorRT 10.3 bindings (no GPU), no pycuda: the missing piece is named with its install."""
    runtime = ROOT / ".cache" / "trt-api" / "10.3.0" / "runtime"
    if not (runtime / "tensorrt").is_dir():
        pytest.skip("TensorRT bindings not cached: run `make trt-bindings`")
    code = ("from detnet_trt.runtime.backends.tensorrt import TensorRTBackend\n"
            f"b = TensorRTBackend({str(engine)!r})\n"
            "try:\n    b.open()\nexcept Exception as e:\n    print(type(e).__name__, '|', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(runtime), str(ROOT)]))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    out = res.stdout.strip()
    if "pycuda" in sys.modules or "pycuda is not installed" not in out:
        pytest.skip(f"pycuda present here: {out}")
    assert out.startswith("MissingDependencyError | pycuda is not installed, the TensorRT runtime needs it")
    assert "detnet-trt[tensorrt]" in out


def test_missing_pycuda_error_type() -> None:
    from detnet_trt.trt import cuda

    if cuda.have_pycuda():
        pytest.skip("pycuda is installed")
    with pytest.raises(MissingDependencyError, match="pycuda is not installed"):
        cuda.HostBuffer(16)


def test_open_refuses_an_engine_that_does_not_match_its_sidecar(engine) -> None:
    """Issue 16: the sidecar's engine sha256 is verified before TensorRT (or a GPU) is involved."""
    from detnet_trt.core.fileio import sha256_bytes
    from detnet_trt.core.sidecar import read_sidecar

    info = read_sidecar(engine)
    info.engine_sha256 = sha256_bytes(b"not a plan")
    write_sidecar(engine, info)
    engine.write_bytes(b"not a plaN")  # one byte changed after the build
    backend = TensorRTBackend(engine)
    with pytest.raises(ModelFileError, match=r"m\.engine is corrupt .*sidecar records [0-9a-f]{12} \(.*rebuild"):
        backend.open()
    assert not backend.is_open
