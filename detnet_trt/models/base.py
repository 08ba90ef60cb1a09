"""FrameDetector: what every detector here shares, the uint8-frame input contract.

Both detectors (:class:`~.detector.DetNetDetector`, :class:`~.detnet_fpn.DetNetFPNDetector`) take
uint8 BGR frames as OpenCV delivers them (``layout`` ``"nchw"`` or ``"nhwc"``), cast, reorder and
normalise them in the graph (ImageNet mean / std, RGB), and carry their class names and the
:class:`~detnet_trt.core.meta.ModelMeta` fields every model file records.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.errors import InputError
from ..core.meta import IMAGENET_MEAN, IMAGENET_STD, ModelMeta


class FrameDetector(nn.Module):
    """Base of the detectors: class names, input size / layout / top-K of ``config``, normalisation.

    ``classes`` names what the class names are for in the error of a wrong count ("classes",
    "foreground classes")."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    bgr_to_rgb: torch.Tensor

    def __init__(self, config: Any, class_names: list[str] | None, classes: str = "classes") -> None:
        super().__init__()
        if class_names is None:
            class_names = [f"class_{i}" for i in range(config.num_classes)]
        if len(class_names) != config.num_classes:
            fix = "pass one name per class" if classes == "classes" else "pass one name per foreground class (no background)"
            raise InputError(f"{len(class_names)} class names given for a model with {config.num_classes} {classes}", fix)
        self.name = config.name
        self.class_names = list(class_names)
        self.input_size = config.input_size
        self.layout = config.layout
        self.topk = config.topk
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0]), persistent=False)

    def meta(self) -> ModelMeta:
        """The model file's :class:`ModelMeta` (the shared fields, then :meth:`_more_meta`'s)."""
        return ModelMeta(model=self.name, class_names=list(self.class_names), input_size=self.input_size,
                         layout=self.layout, topk=int(self.topk), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         **self._more_meta())

    def _more_meta(self) -> dict[str, Any]:
        """The :class:`ModelMeta` fields a detector adds (none here)."""
        return {}

    def to_nchw(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 BGR in ``self.layout`` -> float32 BGR, N x 3 x H x W (shape checked)."""
        if images.dim() != 4:
            raise InputError(f"images must be 4-D ({self.layout}), got shape {tuple(images.shape)}")
        # Cast first: TensorRT 8.6 allows a uint8 network input to feed nothing but a Cast.
        x = images.float()
        x = x.permute(0, 3, 1, 2) if self.layout == "nhwc" else x
        if x.shape[1] != 3:
            raise InputError(
                f"images must have 3 channels in layout {self.layout!r}, got shape {tuple(images.shape)}",
                "set model.layout to match the input",
            )
        return x

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 BGR in ``self.layout`` -> float32 normalised RGB, N x 3 x H x W."""
        x = self.to_nchw(images).index_select(1, self.bgr_to_rgb)
        return (x - self.pixel_mean) / self.pixel_std
