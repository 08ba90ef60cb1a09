"""Named model variants and :func:`build_model`."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from torch import nn

from ..core.errors import InputError
from .config import DetNet59Config, DetNetConfig, DetNetTinyConfig
from .detector import DetNetDetector
from .detnet_fpn import DetNetFPNConfig, DetNetFPNDetector

MODELS: dict[str, type[DetNetConfig]] = {
    "detnet59": DetNet59Config,
    "detnet_tiny": DetNetTinyConfig,
    "detnet59_fpn": DetNetFPNConfig,  # two-stage; weights from `detnet-trt import-detnet-pytorch`
}


def build_from_config(config: DetNetConfig, class_names: list[str] | None = None) -> nn.Module:
    """The detector a config describes: :class:`DetNetFPNDetector` for a :class:`DetNetFPNConfig`
    (two-stage), :class:`DetNetDetector` (dense head) otherwise."""
    if isinstance(config, DetNetFPNConfig):
        return DetNetFPNDetector(config, class_names)
    return DetNetDetector(config, class_names)


def model_config(name: str, **fields: Any) -> DetNetConfig:
    """The config of variant ``name`` with some fields overridden (InputError if unknown)."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}", f"choose one of {sorted(MODELS)}")
    cls = MODELS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(f"unknown option(s) {unknown} for model {name!r}", f"known options: {sorted(known)}")
    return cls(**fields)


def build_model(
    name: str,
    num_classes: int,
    class_names: list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    *,
    pretrained_backbone: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build variant ``name`` (see :data:`MODELS`) with ``num_classes`` classes.

    ``input_size`` (H, W) defaults to the variant's; ``overrides`` set other config fields
    (e.g. ``topk=300``, ``head_levels=("p3", "p4", "p5", "p6")``, ``stride_in="1x1"``).
    ``pretrained_backbone``: path of a DetNet_pytorch ImageNet ``detnet59.pth`` to start from.
    """
    if class_names is not None and len(class_names) != num_classes:
        raise InputError(f"{len(class_names)} class names for num_classes={num_classes}", "pass one name per class")
    if input_size is not None:
        overrides["input_size"] = tuple(input_size)
    config = model_config(name, num_classes=num_classes, **overrides)
    model = build_from_config(config, class_names)
    if pretrained_backbone is not None:
        from .pretrained import load_pretrained_backbone

        load_pretrained_backbone(model.backbone, pretrained_backbone)  # type: ignore[arg-type]
    return model
