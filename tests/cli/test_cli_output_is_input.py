"""An output equal to an input is refused, with or without --force, and the input is kept
(issue 16: `export m.pt -o m.pt`, `quantize m.onnx -o m.onnx`, `build`), also through a symlink."""

from __future__ import annotations

import shutil

import pytest

from detnet_trt.cli import main
from detnet_trt.quantize.calibset import make_calib_set


def _digest(path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["no-force", "force"])
def test_export_onto_its_checkpoint_is_refused(tiny_checkpoint, tmp_path, capsys, force) -> None:
    ckpt = tmp_path / "m.pt"
    shutil.copyfile(tiny_checkpoint, ckpt)
    before = _digest(ckpt)
    link = tmp_path / "link.pt"
    link.symlink_to(ckpt)
    for out in (ckpt, link):
        assert main(["export", str(ckpt), "-o", str(out), *force]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0]
    assert _digest(ckpt) == before


def test_quantize_onto_its_input_is_refused(tiny_onnx, tmp_path, capsys) -> None:
    import cv2
    import numpy as np

    model = tmp_path / "m.onnx"
    shutil.copyfile(tiny_onnx, model)
    before = _digest(model)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        cv2.imwrite(str(imgs / f"{i}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    calib = make_calib_set(imgs, tmp_path / "set.txt", num=16, min_images=1)
    for force in ([], ["--force"]):
        assert main(["quantize", str(model), "--calib", str(calib), "-o", str(model), "--no-progress", *force]) == 2
        err = capsys.readouterr().err
        assert "is the input" in err
    assert _digest(model) == before


def test_build_onto_its_onnx_is_refused(tiny_onnx, tmp_path, capsys) -> None:
    model = tmp_path / "m.engine"
    shutil.copyfile(tiny_onnx, model)  # an ONNX named like an engine: the output path is the input
    before = _digest(model)
    assert main(["build", str(model), "--fp16", "-o", str(model), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert _digest(model) == before
