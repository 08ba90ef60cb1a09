"""Backends behind one interface; :func:`load_backend` picks one by file type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...core.errors import ModelFileError
from .base import Backend

SUFFIXES = {".pt": "torch", ".pth": "torch", ".onnx": "onnx", ".engine": "tensorrt", ".plan": "tensorrt"}


def load_backend(path: str | os.PathLike[str], **kwargs: Any) -> Backend:
    """Backend for ``path`` by its suffix: ``.pt`` (PyTorch), ``.onnx`` (ONNX Runtime),
    ``.engine``/``.plan`` (TensorRT). Returned unopened: use it as a context manager."""
    p = Path(path)
    kind = SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise ModelFileError(
            f"{p}: unknown model file type {p.suffix!r}", "expected .pt (checkpoint), .onnx or .engine"
        )
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file", "check the path")
    if kind == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(p, **kwargs)
    if kind == "onnx":
        from .ort import OnnxRuntimeBackend

        return OnnxRuntimeBackend(p, **kwargs)
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(p, **kwargs)


__all__ = ["Backend", "load_backend"]
