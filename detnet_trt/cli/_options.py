"""Option groups shared by several subcommands (not a subcommand: the name starts with ``_``).

Each group declares its flags once and builds its options object from the parsed arguments:

- :func:`add_postprocess_args` / :func:`postprocess_config`: ``--conf``, ``--iou``, ``--max-det``
  -> :class:`~detnet_trt.core.config.PostprocessConfig`;
- :func:`add_backend_args` / :func:`backend_kwargs`: ``--device``, ``--threads`` -> the keyword
  arguments of the backend :func:`~detnet_trt.runtime.backends.load_backend` picks.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.config import PostprocessConfig

DEVICES = ("cpu", "cuda", "tensorrt")


def add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="where .pt / .onnx models run: cpu (default), cuda, or tensorrt (ONNX Runtime's TensorRT provider); "
        "engines always run on their GPU",
    )
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own)")


def backend_kwargs(args: argparse.Namespace, model: str | Path) -> dict[str, Any]:
    """Constructor keyword arguments of the backend :func:`load_backend` picks for ``model``."""
    suffix = Path(model).suffix.lower()
    device = getattr(args, "device", None)
    if suffix in (".pt", ".pth"):
        return {"device": "cuda" if device in ("cuda", "tensorrt") else "cpu"} if device else {}
    if suffix == ".onnx":
        kw: dict[str, Any] = {}
        if device:
            kw["providers"] = device
        if getattr(args, "threads", None):
            kw["threads"] = args.threads
        return kw
    return {}


def add_postprocess_args(
    p: argparse.ArgumentParser,
    defaults: PostprocessConfig = PostprocessConfig(),
    *,
    per: str = "image",
    conf: bool = True,
    max_det: bool = True,
    note: str = "",
) -> None:
    """``--conf`` (unless ``conf`` is false), ``--iou`` and ``--max-det`` (unless ``max_det`` is
    false) with ``defaults``.

    ``per`` names the unit of ``--max-det`` ("image", "frame"); ``note`` prefixes every help text
    (e.g. "--nms onnx: ")."""
    if conf:
        p.add_argument("--conf", type=float, default=defaults.conf, help=f"{note}score threshold (default %(default)s)")
    p.add_argument("--iou", type=float, default=defaults.iou, help=f"{note}NMS IoU threshold (default %(default)s)")
    if max_det:
        p.add_argument("--max-det", type=int, default=defaults.max_det,
                       help=f"{note}detections per {per} at most (default %(default)s)")


def postprocess_config(args: argparse.Namespace, defaults: PostprocessConfig = PostprocessConfig()) -> PostprocessConfig:
    """The :class:`PostprocessConfig` of the flags :func:`add_postprocess_args` declared (a flag
    the command does not have keeps its value from ``defaults``)."""
    return PostprocessConfig(
        conf=getattr(args, "conf", defaults.conf),
        iou=getattr(args, "iou", defaults.iou),
        max_det=getattr(args, "max_det", defaults.max_det),
    )
