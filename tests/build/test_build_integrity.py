"""``build`` verifies the recorded hashes of what it is given before any step uses it (issue 16,
"Integrity is checked where it is recorded"), with or without TensorRT installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from corrupt import flip_tensor_byte, flip_weight_byte

from detnet_trt.build.chain import build_engine
from detnet_trt.build.options import BuildOptions
from detnet_trt.core.errors import ModelFileError


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
