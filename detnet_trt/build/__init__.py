"""TensorRT engines: the export -> quantize -> fp16 -> nms -> TensorRT chain (:mod:`.chain`), its
one options object (:mod:`.options`), the TensorRT builder steps (:mod:`.builder`) and the
FP16-typed ONNX (:mod:`.fp16`). The runtime side is :mod:`detnet_trt.runtime.backends.tensorrt`.

Importing this package (or any module in it) needs neither TensorRT nor pycuda: both are imported
lazily, inside the functions that use them. The names below are re-exported lazily (PEP 562), so
that importing :mod:`.options` (the CLI does, to declare its flags) loads nothing of the chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

# public name -> module (in this package) that defines it
_EXPORTS = {"BuildOptions": ".options", "EngineBuildError": ".options", "build_engine": ".chain"}

__all__ = ["BuildOptions", "EngineBuildError", "build_engine"]  # = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from .chain import build_engine
    from .options import BuildOptions, EngineBuildError
