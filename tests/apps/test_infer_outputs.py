"""``infer``: the --out folder is never an input, is checked before the work, and a failed write
is an error, not "wrote" (issue 16)."""

from __future__ import annotations

import errno
import os

import cv2
import numpy as np
import pytest

from detnet_trt.apps.infer import JSON_NAME, InferOptions, run_inference
from detnet_trt.core import fileio
from detnet_trt.core.fileio import OutputError

QUIET = InferOptions(progress=False, force=True)


@pytest.fixture()
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(d / f"p{i}.jpg"), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    return d


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_out_equal_to_or_holding_an_input_is_refused_and_photos_kept(tiny_onnx, photos, tmp_path, monkeypatch) -> None:
    before = _snapshot(photos)
    link = tmp_path / "link"
    link.symlink_to(photos)
    monkeypatch.chdir(tmp_path)
    cases = [
        ([photos], photos),  # infer DIR --out DIR --force
        (["photos"], "photos/../photos"),  # relative spellings
        ([photos], link),  # through a symlink
        ([photos / "p0.jpg"], photos),  # the folder holding an input file
        ([photos], tmp_path),  # the folder holding an input folder
    ]
    for inputs, out in cases:
        with pytest.raises(OutputError, match="--out: output"):
            run_inference(tiny_onnx, inputs, out, QUIET)
    assert _snapshot(photos) == before


def test_out_inside_an_input_folder_is_fine(tiny_onnx, photos) -> None:
    res = run_inference(tiny_onnx, [photos], photos / "annotated", QUIET)
    assert len(res.outputs) == 2 and (photos / "annotated" / JSON_NAME).is_file()


def test_out_where_a_file_is_in_the_way(tiny_onnx, photos, tmp_path, capsys) -> None:
    from detnet_trt.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["infer", "--model", str(tiny_onnx), str(photos), "--out", str(tmp_path / "f" / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("detnet-trt infer: error: --out: cannot create folder") and err.count("\n") == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_out_is_refused_before_the_work(tiny_onnx, photos, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            run_inference(tiny_onnx, [photos], ro, QUIET)
    finally:
        ro.chmod(0o755)


def test_full_disk_during_the_run_is_an_error_not_wrote(tiny_onnx, photos, tmp_path, monkeypatch, capsys) -> None:
    from detnet_trt.cli import main

    out = tmp_path / "o"
    out.mkdir()
    real = fileio.os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2:  # the probe and the first image pass; the disk is full after that
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    assert main(["infer", "--model", str(tiny_onnx), str(photos), "--out", str(out), "--quiet"]) == 2
    cap = capsys.readouterr()
    assert "detections" not in cap.out  # no "N image(s) ... ->" line
    assert "no space left" in cap.err and cap.err.count("\n") == 1
    assert not (out / JSON_NAME).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial files
