"""DetNet models: the DetNet-59 backbone, DetNet-FPN, an FCOS-style dense head, the registry."""

from .backbone import DetNetBackbone, ShapeSpec
from .classifier import DetNetClassifier
from .config import DetNet59Config, DetNetConfig, DetNetTinyConfig
from .detector import DetNetDetector
from .fpn import DetNetFPN
from .head import DenseHead
from .pretrained import StateDictMismatchError, load_detnet_pytorch
from .registry import MODELS, build_model, model_config

__all__ = [
    "MODELS",
    "DenseHead",
    "DetNet59Config",
    "DetNetBackbone",
    "DetNetClassifier",
    "DetNetConfig",
    "DetNetDetector",
    "DetNetFPN",
    "DetNetTinyConfig",
    "ShapeSpec",
    "StateDictMismatchError",
    "build_model",
    "load_detnet_pytorch",
    "model_config",
]
