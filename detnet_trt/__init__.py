"""detnet-trt: DetNet detectors from PyTorch to ONNX and TensorRT, with a Python runtime.

Importing the package needs neither TensorRT nor pycuda nor a GPU; those are imported lazily by
the engine-build and TensorRT-runtime modules only.
"""

from ._version import __version__
from .backends import Backend, load_backend
from .bench import benchmark
from .calibset import make_calib_set, read_calib_set
from .camera import run_camera
from .compare import compare
from .engine import TensorRTBackend, build_engine
from .errors import DetnetError
from .evaluation import evaluate
from .export import export_onnx, read_onnx_meta
from .infer import run_inference
from .meta import ModelMeta
from .pipeline import Detector
from .postprocess import Detections, batched_nms, nms, postprocess
from .preprocess import Letterboxer, LetterboxInfo, letterbox
from .quantize import quantize_onnx

__all__ = [
    "__version__",
    "Backend",
    "Detections",
    "Detector",
    "DetnetError",
    "Letterboxer",
    "TensorRTBackend",
    "LetterboxInfo",
    "ModelMeta",
    "batched_nms",
    "benchmark",
    "build_engine",
    "compare",
    "evaluate",
    "export_onnx",
    "letterbox",
    "make_calib_set",
    "load_backend",
    "nms",
    "postprocess",
    "quantize_onnx",
    "run_inference",
    "read_calib_set",
    "read_onnx_meta",
    "run_camera",
]
