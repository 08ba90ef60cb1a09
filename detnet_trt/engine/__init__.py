"""TensorRT engines: build (``build``), run (``runtime``), version differences (``compat``), CUDA
buffers (``cuda``), engine metadata (``sidecar``), FP16-typed ONNX (``fp16``).

Importing this package (or any module in it) needs neither TensorRT nor pycuda: both are imported
lazily, inside the functions that use them.
"""

from .build import BuildOptions, EngineBuildError, build_engine
from .runtime import TensorRTBackend
from .sidecar import EngineInfo, read_sidecar, sidecar_path

__all__ = [
    "BuildOptions",
    "EngineBuildError",
    "EngineInfo",
    "TensorRTBackend",
    "build_engine",
    "read_sidecar",
    "sidecar_path",
]
