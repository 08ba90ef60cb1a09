"""Named model variants and :func:`build_model`."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..core.errors import InputError
from .config import DetNet59Config, DetNetConfig, DetNetTinyConfig
from .detector import DetNetDetector

MODELS: dict[str, type[DetNetConfig]] = {
    "detnet59": DetNet59Config,
    "detnet_tiny": DetNetTinyConfig,
}


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
) -> DetNetDetector:
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
    model = DetNetDetector(config, class_names)
    if pretrained_backbone is not None:
        from .pretrained import load_pretrained_backbone

        load_pretrained_backbone(model.backbone, pretrained_backbone)
    return model
