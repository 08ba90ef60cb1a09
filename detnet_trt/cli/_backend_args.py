"""Backend options shared by ``eval``, ``compare`` and ``bench`` (not a subcommand: starts with ``_``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
