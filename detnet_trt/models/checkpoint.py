"""Detector checkpoints: one file with config, class names, input size and weights.

Format (a dict, saved with ``torch.save`` through an atomic write, read with
``torch.load(weights_only=True)``)::

    {"format": "detnet_trt.checkpoint/1", "model": <variant name>, "config": <config dict>,
     "class_names": [...], "input_size": [H, W], "state_dict": {...}, "extra": {...},
     "weights_sha256": <sha256 of the state_dict's names, dtypes, shapes and tensor bytes>}

A missing, truncated, foreign or mismatched file raises :class:`ModelFileError` naming the file
and what is wrong. ``weights_sha256`` is computed when the file is saved and verified when it is
read: ``torch.load`` checks the zip's structure but not the bytes inside a tensor, so a flipped
bit in the weights would otherwise load silently. Checkpoints written before the hash existed
(no ``weights_sha256``) load unchecked (one debug line says so).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..core.errors import DetnetError, ModelFileError
from ..core.fileio import atomic_write_bytes, check_writable, sha256_file

FORMAT = "detnet_trt.checkpoint/1"
_KEYS = ("format", "model", "config", "class_names", "input_size", "state_dict")

checkpoint_sha256 = sha256_file

log = logging.getLogger(__name__)
_FIX = "the file is damaged: re-download or copy it again, or re-create it with `detnet-trt train`"


def weights_sha256(state: dict[str, Any]) -> str:
    """sha256 over the state dict's entries in name order: name, dtype, shape and raw tensor bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    model: Any, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None, force: bool = True
) -> Path:
    """Write ``model`` (a DetNetDetector) to ``path`` atomically; returns the path.

    ``extra`` (plain Python values and tensors only) is stored as is, e.g. training provenance.
    """
    p = check_writable(path, force)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = model.config.to_dict()
    config["topk"] = int(model.topk)
    config["layout"] = model.layout
    config["input_size"] = list(model.input_size)
    ckpt = {
        "format": FORMAT,
        "model": model.name,
        "config": config,
        "class_names": list(model.class_names),
        "input_size": list(model.input_size),
        "state_dict": state,
        "extra": dict(extra or {}),
        "weights_sha256": weights_sha256(state),
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return atomic_write_bytes(p, buf.getvalue(), force=True)


def read_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *, verify: bool = True
) -> dict[str, Any]:
    """Load and validate the checkpoint dict (no model built); ``verify``: check the recorded
    weights hash (:class:`ModelFileError` when the weights' bytes do not match it)."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"checkpoint {p}: no such file")
    if not p.is_file():
        raise ModelFileError(f"checkpoint {p} is not a file")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ModelFileError(
            f"checkpoint {p} cannot be read: truncated, corrupt or not a PyTorch file "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})",
            "re-create it with `detnet-trt train` or save_checkpoint()",
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelFileError(
            f"checkpoint {p} is not a detnet_trt checkpoint (format {got!r}, expected {FORMAT!r})",
            "a plain state dict or another project's checkpoint cannot be used directly",
        )
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise ModelFileError(f"checkpoint {p} lacks the field(s) {missing}")
    if verify:
        _verify_weights(p, ckpt)
    return ckpt


def _verify_weights(p: Path, ckpt: dict[str, Any]) -> None:
    """Refuse weights whose bytes do not hash to the recorded ``weights_sha256``."""
    want = ckpt.get("weights_sha256")
    if not want:
        log.debug("checkpoint %s records no weights_sha256 (written before it existed): weights not verified", p)
        return
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"checkpoint {p}: state_dict is not a mapping of names to tensors")
    got = weights_sha256(state)
    if got != want:
        raise ModelFileError(
            f"checkpoint {p} is corrupt: its weights hash to sha256 {got[:12]}, recorded {str(want)[:12]}", _FIX
        )


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the detector from ``path``; returns ``(model in eval mode, checkpoint dict)``."""
    from .registry import MODELS, build_from_config

    p = Path(path)
    ckpt = read_checkpoint(p, map_location, verify=False)  # verified below, after the shape checks
    name = ckpt["model"]
    if name not in MODELS:
        raise ModelFileError(f"checkpoint {p} is for unknown model {name!r}", f"known models: {sorted(MODELS)}")
    try:
        config = MODELS[name].from_dict(dict(ckpt["config"]))
        model = build_from_config(config, list(ckpt["class_names"]))
    except DetnetError as err:
        raise ModelFileError(f"checkpoint {p} has an invalid config: {err}") from err
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"checkpoint {p} has an invalid config: {err}") from err
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"checkpoint {p}: state_dict is not a mapping of names to tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shaped:
        raise ModelFileError(
            f"checkpoint {p} weights do not fit model {name!r} built from its config: "
            f"{len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, "
            f"{len(shaped)} mis-shaped {shaped[:5]}",
            "the file was edited or written by an incompatible version; re-create it",
        )
    _verify_weights(p, ckpt)
    model.load_state_dict(state)
    model.to(map_location).eval()
    return model, ckpt
