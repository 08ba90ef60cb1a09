"""Test helpers that damage copies of model files the way a bad disk or download does: one bit
flipped inside the data (not the header), so the file still parses (tests of the integrity checks)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import onnx


def flip_tensor_byte(src: Path, dst: Path) -> Path:
    """Copy ``src`` (a torch zip) to ``dst`` with one bit flipped in the middle of its largest tensor's data."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        entry = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    assert entry.compress_type == zipfile.ZIP_STORED
    name_len, extra_len = struct.unpack("<HH", data[entry.header_offset + 26 : entry.header_offset + 30])
    data[entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


def flip_weight_byte(src: Path, dst: Path) -> Path:
    """Copy ``src`` (an ONNX file) with one bit flipped in the middle of its largest initializer's raw data."""
    model = onnx.load(str(src))
    raw = max((i.raw_data for i in model.graph.initializer), key=len)
    data = bytearray(src.read_bytes())
    at = data.find(raw)
    assert at > 0 and len(raw) > 64
    data[at + len(raw) // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


def flip_middle_byte(path: Path) -> Path:
    """Flip one bit in the middle of ``path`` in place (e.g. an ONNX file's external weights)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return path


def write_corrupt_images(folder: Path) -> list[Path]:
    """Three damaged images in ``folder`` (made if needed), as a bad copy or download leaves them:
    an empty file, a JPEG cut off after its header, and text saved under a .png name."""
    folder.mkdir(parents=True, exist_ok=True)
    empty, cut, text = folder / "empty.jpg", folder / "cut.jpg", folder / "text.png"
    empty.write_bytes(b"")
    cut.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    text.write_text("not an image")
    return [empty, cut, text]
