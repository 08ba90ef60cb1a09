"""detnet-trt: DetNet detectors from PyTorch to ONNX and TensorRT, with a Python runtime.

The public API is re-exported here lazily (PEP 562): ``import detnet_trt`` imports none of torch,
onnx, onnxruntime, OpenCV, TensorRT or pycuda; each name below loads its stage package on first
use. The stage packages, bottom to top: ``core`` (contract), ``models``, ``trt``, ``export``,
``runtime``, ``data``, ``evaluation``, ``quantize``, ``build``, ``apps`` / ``training`` /
``serving``, ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .core.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "Backend": "detnet_trt.runtime.backends.base",
    "load_backend": "detnet_trt.runtime.backends",
    "TensorRTBackend": "detnet_trt.runtime.backends.tensorrt",
    "Detector": "detnet_trt.runtime.detector",
    "Detections": "detnet_trt.runtime.postprocess",
    "postprocess": "detnet_trt.runtime.postprocess",
    "nms": "detnet_trt.runtime.nms",
    "batched_nms": "detnet_trt.runtime.nms",
    "Letterboxer": "detnet_trt.runtime.letterbox",
    "LetterboxInfo": "detnet_trt.runtime.letterbox",
    "letterbox": "detnet_trt.runtime.letterbox",
    "PostprocessConfig": "detnet_trt.core.config",
    "DetnetError": "detnet_trt.core.errors",
    "ModelMeta": "detnet_trt.core.meta",
    "read_onnx_meta": "detnet_trt.core.onnx_meta",
    "export_onnx": "detnet_trt.export.onnx",
    "make_calib_set": "detnet_trt.quantize.calibset",
    "read_calib_set": "detnet_trt.quantize.calibset",
    "quantize_onnx": "detnet_trt.quantize.calibrate",
    "BuildOptions": "detnet_trt.build.options",
    "build_engine": "detnet_trt.build.chain",
    "evaluate": "detnet_trt.evaluation.coco_eval",
    "benchmark": "detnet_trt.apps.bench",
    "compare": "detnet_trt.apps.compare",
    "run_camera": "detnet_trt.apps.camera.loop",
    "run_inference": "detnet_trt.apps.infer",
    "InferOptions": "detnet_trt.apps.infer",
    "BenchOptions": "detnet_trt.apps.bench",
    "CompareOptions": "detnet_trt.apps.compare",
    "CameraOptions": "detnet_trt.apps.camera.options",
    "EvalOptions": "detnet_trt.evaluation.coco_eval",
    "QuantizeOptions": "detnet_trt.quantize.options",
    "AccuracyCheckOptions": "detnet_trt.quantize.options",
    "accuracy_check": "detnet_trt.quantize.gate",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from .apps.bench import BenchOptions, benchmark
    from .apps.camera.loop import run_camera
    from .apps.camera.options import CameraOptions
    from .apps.compare import CompareOptions, compare
    from .apps.infer import InferOptions, run_inference
    from .build.chain import build_engine
    from .build.options import BuildOptions
    from .core.config import PostprocessConfig
    from .core.errors import DetnetError
    from .core.meta import ModelMeta
    from .core.onnx_meta import read_onnx_meta
    from .evaluation.coco_eval import EvalOptions, evaluate
    from .export.onnx import export_onnx
    from .quantize.calibrate import quantize_onnx
    from .quantize.calibset import make_calib_set, read_calib_set
    from .quantize.gate import accuracy_check
    from .quantize.options import AccuracyCheckOptions, QuantizeOptions
    from .runtime.backends import load_backend
    from .runtime.backends.base import Backend
    from .runtime.backends.tensorrt import TensorRTBackend
    from .runtime.detector import Detector
    from .runtime.letterbox import Letterboxer, LetterboxInfo, letterbox
    from .runtime.nms import batched_nms, nms
    from .runtime.postprocess import Detections, postprocess
