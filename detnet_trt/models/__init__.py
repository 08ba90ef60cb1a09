"""DetNet models: the DetNet-59 backbone, DetNet-FPN, an FCOS-style dense head, the two-stage
DetNet-59 FPN (RPN + pyramid RoIAlign) of DetNet_pytorch, the registry."""

from .backbone import DetNetBackbone, ShapeSpec
from .classifier import DetNetClassifier
from .config import DetNet59Config, DetNetConfig, DetNetTinyConfig
from .detector import DetNetDetector
from .detnet_fpn import DetNetFPNConfig, DetNetFPNDetector
from .fpn import DetNetFPN
from .head import DenseHead
from .pretrained import StateDictMismatchError, load_detnet_pytorch
from .pretrained_fpn import load_detnet_pytorch_fpn
from .registry import MODELS, build_from_config, build_model, model_config

__all__ = [
    "MODELS",
    "DenseHead",
    "DetNet59Config",
    "DetNetBackbone",
    "DetNetClassifier",
    "DetNetConfig",
    "DetNetDetector",
    "DetNetFPNConfig",
    "DetNetFPNDetector",
    "DetNetFPN",
    "DetNetTinyConfig",
    "ShapeSpec",
    "StateDictMismatchError",
    "build_from_config",
    "build_model",
    "load_detnet_pytorch",
    "load_detnet_pytorch_fpn",
    "model_config",
]
