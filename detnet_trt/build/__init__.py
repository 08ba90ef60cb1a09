"""TensorRT engines: the export -> quantize -> fp16 -> nms -> TensorRT chain (:mod:`.chain`), its
one options object (:mod:`.options`), the TensorRT builder steps (:mod:`.builder`) and the
FP16-typed ONNX (:mod:`.fp16`). The runtime side is :mod:`detnet_trt.runtime.backends.tensorrt`.

Importing this package (or any module in it) needs neither TensorRT nor pycuda: both are imported
lazily, inside the functions that use them.
"""

from .chain import build_engine
from .options import BuildOptions, EngineBuildError

__all__ = ["BuildOptions", "EngineBuildError", "build_engine"]
