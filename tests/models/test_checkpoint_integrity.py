"""A checkpoint's recorded weights hash: computed at save, verified at load (issue 16,
"Integrity is checked where it is recorded"). ``torch.load`` checks the zip's structure, not the
bytes inside a tensor, so a flipped bit in the weights loaded silently before."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch
from corrupt import flip_tensor_byte

from detnet_trt.core.errors import ModelFileError
from detnet_trt.models.checkpoint import load_checkpoint, read_checkpoint, weights_sha256

ASSET = Path(__file__).resolve().parents[2] / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"




def test_saved_checkpoint_records_the_weights_hash(tiny_checkpoint) -> None:
    ckpt = read_checkpoint(tiny_checkpoint)
    assert ckpt["weights_sha256"] == weights_sha256(ckpt["state_dict"])


def test_flipped_weight_byte_is_refused_at_load(tiny_checkpoint, tmp_path: Path) -> None:
    bad = flip_tensor_byte(Path(tiny_checkpoint), tmp_path / "flipped.pt")
    want = read_checkpoint(tiny_checkpoint)["weights_sha256"]
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(ModelFileError, match=r"flipped\.pt is corrupt: its weights hash to sha256 [0-9a-f]{12}, "
                           rf"recorded {want[:12]} \(.*re-download") as err:
            load(bad)
        assert "\n" not in str(err.value)


def test_checkpoint_without_the_hash_loads_unchecked(tiny_checkpoint, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    del ckpt["weights_sha256"]
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    old = tmp_path / "old.pt"
    old.write_bytes(buf.getvalue())
    with caplog.at_level(logging.DEBUG, logger="detnet_trt.models.checkpoint"):
        model, _ = load_checkpoint(old)
    assert model is not None
    assert "records no weights_sha256" in caplog.text


def test_shipped_asset_still_loads() -> None:
    model, ckpt = load_checkpoint(ASSET)
    assert model is not None and "state_dict" in ckpt
