"""The one place that reads and writes :class:`~detnet_trt.core.meta.ModelMeta` in an ONNX file.

The metadata lives in the model's ``metadata_props`` (keys ``detnet_trt.<field>``, JSON values);
entries of other tools are kept. ``onnx`` is imported only by :func:`read_onnx_meta`; the other
functions take an already loaded ``onnx.ModelProto``.

Integrity: a writer calls :func:`seal` just before serialising, which records
``detnet_trt.content_sha256``, the sha256 of the serialised graph (nodes and initializers, i.e. the
weights). :func:`read_onnx_meta` and :func:`verify_content` recompute it and refuse a file whose
graph does not match (a flipped bit in a weight otherwise parses and runs). Files without the key
(older exports, files rewritten by a step that does not seal) are not verified. :func:`set_meta`
drops the key: a step that rewrites the graph must seal again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .fileio import sha256_bytes
from .meta import META_PREFIX, ModelMeta

_EXPORT_HINT = "export the model with `detnet-trt export CHECKPOINT -o model.onnx`"
CONTENT_KEY = META_PREFIX + "content_sha256"
_CORRUPT_HINT = "the file is damaged: copy or download it again, or re-export it with `detnet-trt export`"


def props_of(model: Any) -> dict[str, str]:
    """All ``metadata_props`` of a loaded ONNX model as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def meta_of(model: Any) -> ModelMeta | None:
    """The detnet_trt metadata of a loaded ONNX model; ``None`` when it carries none."""
    return ModelMeta.from_props(props_of(model))


def set_meta(model: Any, meta: ModelMeta) -> None:
    """Replace the detnet_trt entries of ``model.metadata_props`` by ``meta``; keep the others."""
    keep = [(k, v) for k, v in props_of(model).items() if not k.startswith(META_PREFIX)]
    del model.metadata_props[:]  # the content hash too: the caller seals again after its changes
    for k, v in [*keep, *meta.to_props().items()]:
        model.metadata_props.add(key=k, value=v)


def content_sha256(model: Any) -> str:
    """sha256 of the serialised graph of a loaded ONNX model (its nodes and initializers).

    An initializer's ``data_location`` explicitly set to DEFAULT (what loading external data
    leaves) is cleared first: the same tensor, the same hash, wherever the file kept its bytes."""
    for t in model.graph.initializer:
        if t.HasField("data_location") and t.data_location == 0:
            t.ClearField("data_location")
    return sha256_bytes(model.graph.SerializeToString(deterministic=True))


def seal(model: Any) -> str:
    """Record :func:`content_sha256` in ``model.metadata_props`` (call it last, before writing)."""
    digest = content_sha256(model)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != CONTENT_KEY]
    del model.metadata_props[:]
    for k, v in [*keep, (CONTENT_KEY, json.dumps(digest))]:
        model.metadata_props.add(key=k, value=v)
    return digest


def verify_content(model: Any, path: str | os.PathLike[str]) -> None:
    """:class:`ModelFileError` when ``model`` records a content hash its graph does not match."""
    recorded = props_of(model).get(CONTENT_KEY)
    if recorded is None:
        return
    try:
        want = str(json.loads(recorded))
    except ValueError:
        want = recorded
    got = content_sha256(model)
    if got != want:
        raise ModelFileError(
            f"ONNX file {path} is corrupt: its graph hashes to sha256 {got[:12]}, recorded {want[:12]}", _CORRUPT_HINT
        )


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
    """The :class:`ModelMeta` stored in a detnet_trt ONNX file (:class:`ModelFileError` otherwise,
    also when the file's graph does not match its recorded content hash)."""
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
    meta = require_meta(model, p)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external and CONTENT_KEY in props_of(model):
        try:  # the recorded hash covers the weights, wherever the file keeps them
            onnx.load_external_data_for_model(model, str(p.parent))
        except Exception as err:
            raise ModelFileError(
                f"{p}: its external weight data cannot be read ({type(err).__name__}: {err})",
                "keep the weights file beside the .onnx, as it was saved",
            ) from err
    verify_content(model, p)
    return meta
