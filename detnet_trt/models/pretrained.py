"""Import of ImageNet weights saved by the public DetNet_pytorch implementation.

That checkpoint (``detnet59.pth``) is a plain state dict with keys ``conv1.*``, ``bn1.*``,
``layer1`` ... ``layer5`` (stages 2 ... 6) and ``fc.*``. Its blocks name their projection
shortcut ``downsample`` (stages 2-4) or ``extra_conv`` (bottleneck B of stages 5-6); ours call
both ``shortcut``. Everything else maps 1:1. Its bottlenecks put the stride in the 3x3 conv, so
the import builds the backbone with ``stride_in="3x3"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..core.errors import ModelFileError
from .backbone import DetNetBackbone
from .classifier import DetNetClassifier
from .config import DetNet59Config

_SHORTCUT = re.compile(r"^(layer\d+\.\d+)\.(?:downsample|extra_conv)\.")


class StateDictMismatchError(ModelFileError):
    """A state dict does not fit the network: missing, unexpected or mis-shaped keys."""


def _rename(key: str) -> str:
    """Public DetNet_pytorch key -> our key (without the ``backbone.`` prefix)."""
    key = key[len("module."):] if key.startswith("module.") else key
    return _SHORTCUT.sub(r"\1.shortcut.", key)


def _check_and_load(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, ignore: tuple[str, ...] = ()
) -> None:
    """Strict load with one error listing every missing, unexpected and mis-shaped key."""
    own = module.state_dict()
    optional = ("num_batches_tracked",)  # absent from checkpoints saved by PyTorch < 0.4.1
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own and not k.startswith(ignore)]
    shaped = [
        f"{k} (expected {tuple(own[k].shape)}, got {tuple(state[k].shape)})"
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shaped:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")
                parts.append(f"{len(keys)} {what} key(s): {shown}")
        raise StateDictMismatchError(
            f"{source} does not fit the DetNet-59 layout: " + "; ".join(parts),
            "expected a DetNet_pytorch detnet59 state dict (keys conv1, bn1, layer1..layer5, fc)",
        )
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k])


def _as_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{source} is not a state dict (a mapping of names to tensors)")
    return {str(k): v for k, v in obj.items()}


def load_detnet_pytorch(
    state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict"
) -> DetNetClassifier:
    """Classification DetNet-59 (1000 classes) holding a DetNet_pytorch ``detnet59`` state dict.

    Its forward on an N x 3 x 224 x 224 float tensor returns the same logits as that
    implementation. Missing, unexpected or mis-shaped keys raise :class:`StateDictMismatchError`
    listing them.
    """
    state = {_rename(k): v for k, v in _as_state_dict(state_dict, source).items()}
    fc = state.get("fc.weight")
    num_classes = int(fc.shape[0]) if isinstance(fc, torch.Tensor) and fc.dim() == 2 else 1000
    model = DetNetClassifier(DetNet59Config(stride_in="3x3"), num_classes=num_classes)
    mapped = {k if k.startswith("fc.") else "backbone." + k: v for k, v in state.items()}
    _check_and_load(model, mapped, source)
    return model.eval()


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` state dict with ``torch.load(weights_only=True)``; ModelFileError on failure."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file", "give the path of a DetNet_pytorch detnet59.pth")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelFileError(f"{p} is not a readable PyTorch weights file ({type(err).__name__}: {err})") from err
    return _as_state_dict(obj, str(p))


def load_pretrained_backbone(backbone: DetNetBackbone, path: str | os.PathLike[str]) -> None:
    """Copy a DetNet_pytorch ImageNet checkpoint (classifier ``fc`` ignored) into ``backbone``."""
    state = {_rename(k): v for k, v in read_state_dict(path).items()}
    _check_and_load(backbone, state, str(path), ignore=("fc.",))
