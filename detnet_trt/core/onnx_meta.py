"""The one place that reads and writes :class:`~detnet_trt.core.meta.ModelMeta` in an ONNX file.

The metadata lives in the model's ``metadata_props`` (keys ``detnet_trt.<field>``, JSON values);
entries of other tools are kept. ``onnx`` is imported only by :func:`read_onnx_meta`; the other
functions take an already loaded ``onnx.ModelProto``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .meta import META_PREFIX, ModelMeta

_EXPORT_HINT = "export the model with `detnet-trt export CHECKPOINT -o model.onnx`"


def props_of(model: Any) -> dict[str, str]:
    """All ``metadata_props`` of a loaded ONNX model as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def meta_of(model: Any) -> ModelMeta | None:
    """The detnet_trt metadata of a loaded ONNX model; ``None`` when it carries none."""
    return ModelMeta.from_props(props_of(model))


def set_meta(model: Any, meta: ModelMeta) -> None:
    """Replace the detnet_trt entries of ``model.metadata_props`` by ``meta``; keep the others."""
    keep = [(k, v) for k, v in props_of(model).items() if not k.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for k, v in [*keep, *meta.to_props().items()]:
        model.metadata_props.add(key=k, value=v)


def require_meta(model: Any, path: str | os.PathLike[str]) -> ModelMeta:
    """:func:`meta_of`, or :class:`ModelFileError` naming ``path`` when the file carries none."""
    try:
        meta = meta_of(model)
    except (ValueError, TypeError) as err:
        raise ModelFileError(f"{path} has corrupt detnet_trt metadata ({err})", "re-export it") from err
    if meta is None:
        raise ModelFileError(
            f"{path} has no detnet_trt metadata (class names, input size, layout)",
            f"{_EXPORT_HINT}; ONNX files made by other tools cannot be used directly",
        )
    return meta


def read_onnx_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The :class:`ModelMeta` stored in a detnet_trt ONNX file (:class:`ModelFileError` otherwise)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"ONNX file {p}: no such file", "check the path")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as err:
        raise ModelFileError(
            f"{p} is not a readable ONNX file ({type(err).__name__})",
            "re-export it with `detnet-trt export CHECKPOINT -o model.onnx`",
        ) from err
    return require_meta(model, p)
