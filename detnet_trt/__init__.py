"""detnet-trt: DetNet detectors from PyTorch to ONNX and TensorRT, with a Python runtime.

Importing the package needs neither TensorRT nor pycuda nor a GPU; those are imported lazily by
the engine-build and TensorRT-runtime modules only.
"""

from ._version import __version__
from .backends import Backend, load_backend
from .errors import DetnetError
from .meta import ModelMeta
from .pipeline import Detector
from .postprocess import Detections, batched_nms, nms, postprocess
from .preprocess import Letterboxer, LetterboxInfo, letterbox

__all__ = [
    "__version__",
    "Backend",
    "Detections",
    "Detector",
    "DetnetError",
    "Letterboxer",
    "LetterboxInfo",
    "ModelMeta",
    "batched_nms",
    "letterbox",
    "load_backend",
    "nms",
    "postprocess",
]
