"""Import of the DetNet-59 FPN detectors trained by the public DetNet_pytorch implementation.

Their checkpoint (``fpn_<session>_<epoch>_<step>.pth``, written by ``trainval_net.py``) is a dict
``{"session", "epoch", "model", "optimizer", "pooling_mode", "class_agnostic"}`` whose ``model``
is the state dict of their ``detnet`` module:

| their key prefix | ours |
| --- | --- |
| ``RCNN_layer0.0`` / ``RCNN_layer0.1`` | ``backbone.conv1`` / ``backbone.bn1`` |
| ``RCNN_layer{k}.0.{i}`` (``downsample`` / ``extra_conv``) | ``backbone.layer{k}.{i}`` (``shortcut``) |
| ``RCNN_toplayer``, ``RCNN_latlayer1..4``, ``RCNN_smooth1..2`` | ``neck.top``, ``neck.lat5..lat2``, ``neck.smooth3..smooth2`` |
| ``RCNN_rpn.RPN_Conv`` / ``RPN_cls_score`` / ``RPN_bbox_pred`` | ``rpn.conv`` / ``rpn.cls`` / ``rpn.box`` |
| ``RCNN_top.0`` / ``RCNN_top.2``, ``RCNN_cls_score``, ``RCNN_bbox_pred`` | ``roi_head.fc6`` / ``fc7``, ``roi_head.cls``, ``roi_head.box`` |

The RoI pooling size is read from ``RCNN_top.0.weight`` (14 in their ``cfgs/detnet59.yml``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..core.errors import InputError, ModelFileError
from .detnet_fpn import DetNetFPNConfig, DetNetFPNDetector
from .pretrained import StateDictMismatchError, _rename

_PREFIXES = (
    ("RCNN_layer0.0.", "backbone.conv1."),
    ("RCNN_layer0.1.", "backbone.bn1."),
    ("RCNN_toplayer.", "neck.top."),
    ("RCNN_latlayer1.", "neck.lat5."),
    ("RCNN_latlayer2.", "neck.lat4."),
    ("RCNN_latlayer3.", "neck.lat3."),
    ("RCNN_latlayer4.", "neck.lat2."),
    ("RCNN_smooth1.", "neck.smooth3."),
    ("RCNN_smooth2.", "neck.smooth2."),
    ("RCNN_rpn.RPN_Conv.", "rpn.conv."),
    ("RCNN_rpn.RPN_cls_score.", "rpn.cls."),
    ("RCNN_rpn.RPN_bbox_pred.", "rpn.box."),
    ("RCNN_top.0.", "roi_head.fc6."),
    ("RCNN_top.2.", "roi_head.fc7."),
    ("RCNN_cls_score.", "roi_head.cls."),
    ("RCNN_bbox_pred.", "roi_head.box."),
)
_LAYER = re.compile(r"^RCNN_layer([1-5])\.0\.")
_EXPECTED = "a DetNet_pytorch detnet59 FPN state dict (keys RCNN_layer0..5, RCNN_toplayer, RCNN_rpn.*, RCNN_top, RCNN_cls_score, RCNN_bbox_pred)"
_FIX_FILE = "pass the fpn_*.pth file that DetNet_pytorch's trainval_net.py wrote"


def _our_key(key: str) -> str | None:
    key = key[len("module."):] if key.startswith("module.") else key
    m = _LAYER.match(key)
    if m:
        return "backbone." + _rename(f"layer{m.group(1)}." + key[m.end():])
    for theirs, ours in _PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return None


def _model_state(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of their checkpoint dict (or a bare state dict); checks options."""
    if isinstance(obj, Mapping) and "model" in obj:
        mode = obj.get("pooling_mode", "align")
        if mode != "align":
            raise ModelFileError(
                f"{source} was trained with pooling_mode {mode!r}; only 'align' (their cfgs/detnet59.yml) is supported",
                "use a checkpoint trained with POOLING_MODE align",
            )
        if obj.get("class_agnostic", False):
            raise ModelFileError(
                f"{source} is a class_agnostic model (trained with --cag); only class-specific box regression is supported",
                "use a checkpoint trained without --cag",
            )
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{source} holds no state dict (expected a dict with a 'model' mapping of names to tensors)", _FIX_FILE)
    return {str(k): v for k, v in obj.items()}


def _check_and_copy(model: DetNetFPNDetector, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict copy with one error listing missing, unexpected and mis-shaped keys (their names)."""
    own = model.state_dict()
    mapped = {k: (_our_key(k), v) for k, v in state.items()}
    unexpected = [k for k, (ours, _) in mapped.items() if ours is None or ours not in own]
    theirs_of = {ours: k for k, (ours, _) in mapped.items() if ours is not None}
    missing = [k for k in own if k not in theirs_of and not k.endswith("num_batches_tracked")]
    shaped = [
        f"{theirs_of[k]} (expected {tuple(v.shape)}, got {tuple(mapped[theirs_of[k]][1].shape)})"
        for k, v in own.items()
        if k in theirs_of and tuple(v.shape) != tuple(mapped[theirs_of[k]][1].shape)
    ]
    if missing or unexpected or shaped:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys) - 12} more)" if len(keys) > 12 else "")
                parts.append(f"{len(keys)} {what} key(s): {shown}")
        raise StateDictMismatchError(f"{source} does not fit the DetNet-59 FPN layout: " + "; ".join(parts), f"expected {_EXPECTED}")
    with torch.no_grad():
        for ours, k in theirs_of.items():
            own[ours].copy_(mapped[k][1])


def load_detnet_pytorch_fpn(  # 6 parameters: the weights, the class count and the deployment options
    state_dict: Mapping[str, Any],
    num_classes: int,
    class_names: list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    *,
    source: str = "state dict",
    **overrides: Any,
) -> DetNetFPNDetector:
    """The package's DetNet-59 FPN detector holding a DetNet_pytorch FPN checkpoint's weights.

    Args:
        state_dict: their checkpoint dict (with ``model``, ``pooling_mode``, ``class_agnostic``)
            or its ``model`` state dict.
        num_classes: classes *including background*, as that code counts them (VOC 21, COCO 81).
        class_names: the ``num_classes - 1`` foreground names (default ``class_0`` ...).
        input_size: (H, W), multiples of 16 (default 608 x 800, see :class:`DetNetFPNConfig`).
        overrides: other :class:`DetNetFPNConfig` fields (``topk`` proposals, ``max_det``, ...).

    Raises :class:`ModelFileError` (or its :class:`StateDictMismatchError`) naming the problem.
    """
    state = _model_state(state_dict, source)
    cls_w = state.get("RCNN_cls_score.weight")
    box_w = state.get("RCNN_bbox_pred.weight")
    if cls_w is not None and cls_w.dim() == 2 and int(cls_w.shape[0]) != int(num_classes):
        raise ModelFileError(
            f"{source} has {int(cls_w.shape[0])} classes (background included), not {num_classes}",
            f"pass the class list it was trained with ({int(cls_w.shape[0]) - 1} foreground names)",
        )
    if box_w is not None and box_w.dim() == 2 and int(box_w.shape[0]) == 4 and int(num_classes) != 1:
        raise ModelFileError(f"{source} is a class_agnostic model (RCNN_bbox_pred has 4 outputs)", "use a checkpoint trained without --cag")
    if int(num_classes) < 2:
        raise InputError(f"num_classes {num_classes} must count background and at least one class", "VOC: 21, COCO: 81")
    top = state.get("RCNN_top.0.weight")
    if top is not None and top.dim() == 4:
        overrides.setdefault("pool_size", int(top.shape[-1]))
    if input_size is not None:
        overrides["input_size"] = tuple(input_size)
    config = DetNetFPNConfig(num_classes=int(num_classes) - 1, stride_in="3x3", **overrides)
    model = DetNetFPNDetector(config, class_names)
    _check_and_copy(model, state, source)
    return model.eval()


def read_detnet_pytorch_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load their ``.pth`` with ``torch.load(weights_only=True)``; ModelFileError if it cannot be."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file", _FIX_FILE)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ModelFileError(
            f"{p} cannot be loaded with torch.load(weights_only=True) ({type(err).__name__}: {first})",
            "it must be a PyTorch checkpoint of tensors and plain values; re-save its 'model' state dict with torch.save",
        ) from err
    if not isinstance(obj, Mapping):
        raise ModelFileError(f"{p} holds a {type(obj).__name__}, not a checkpoint dict", _FIX_FILE)
    return dict(obj)
