"""``build`` verifies the recorded hashes of what it is given before any step uses it (issue 16,
"Integrity is checked where it is recorded"), with or without TensorRT installed."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import onnx
import pytest

from detnet_trt.build.chain import build_engine
from detnet_trt.build.options import BuildOptions
from detnet_trt.core.errors import ModelFileError


def flip_weight_byte(src: Path, dst: Path) -> Path:
    """Copy ``src`` with one bit flipped in the middle of its largest initializer's raw data."""
    model = onnx.load(str(src))
    raw = max((i.raw_data for i in model.graph.initializer), key=len)
    data = bytearray(src.read_bytes())
    at = data.find(raw)
    assert at > 0 and len(raw) > 64
    data[at + len(raw) // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


def flip_tensor_byte(src: Path, dst: Path) -> Path:
    """Copy ``src`` (a torch zip) to ``dst`` with one bit flipped in the middle of its largest tensor's data."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        entry = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[entry.header_offset + 26 : entry.header_offset + 30])
    data[entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_refuses_a_corrupt_onnx(tiny_onnx, tmp_path: Path, precision: str) -> None:
    bad = flip_weight_byte(Path(tiny_onnx), tmp_path / "flipped.onnx")
    with pytest.raises(ModelFileError, match=r"flipped\.onnx is corrupt: its graph hashes to sha256"):
        build_engine(bad, tmp_path / "m.engine", BuildOptions(precision=precision, progress=False))
    assert not (tmp_path / "m.engine").exists()


def test_build_refuses_a_corrupt_checkpoint(tiny_checkpoint, tmp_path: Path) -> None:
    bad = flip_tensor_byte(Path(tiny_checkpoint), tmp_path / "flipped.pt")
    with pytest.raises(ModelFileError, match=r"flipped\.pt is corrupt: its weights hash to sha256"):
        build_engine(bad, tmp_path / "m.engine", BuildOptions(precision="fp32", progress=False))
    assert not (tmp_path / "m.onnx").exists()
