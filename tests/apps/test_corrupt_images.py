"""A corrupt image, the same way in ``infer`` and ``compare`` (detnet_trt/core/images.py): named on
stderr as it is met, skipped, counted at the end, exit 1 (``EXIT_SKIPPED_IMAGES``) once the others
are done; none readable is exit 2."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from corrupt import write_corrupt_images

from detnet_trt.cli import main
from detnet_trt.core.images import EXIT_SKIPPED_IMAGES


@pytest.fixture()
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(2):
        cv2.imwrite(str(d / f"good{i}.jpg"), np.full((60, 80, 3), 60 * (i + 1), np.uint8))
    bad = write_corrupt_images(d)
    return d, bad


def check_skip_lines(err: str, command: str, bad) -> None:
    """One warning line per damaged image as it is met, then one line counting them."""
    lines = err.strip().splitlines()
    warnings = [ln for ln in lines if ln.startswith(f"detnet-trt {command}: warning: cannot read image ")]
    assert sorted(ln.split("cannot read image ")[1].split(":")[0].rsplit("/", 1)[-1] for ln in warnings) == \
        sorted(p.name for p in bad), err
    assert all(ln.endswith("; skipped") for ln in warnings)
    assert lines[-1].startswith(f"detnet-trt {command}: error: {len(bad)} image(s) could not be read and were skipped: ")
    assert all(p.name in lines[-1] for p in bad) and "Traceback" not in err


def test_infer(tiny_onnx, photos, tmp_path, capsys) -> None:
    d, bad = photos
    out = tmp_path / "out"
    assert EXIT_SKIPPED_IMAGES == 1
    assert main(["infer", "--model", str(tiny_onnx), str(d), "--out", str(out), "--quiet"]) == 1
    cap = capsys.readouterr()
    check_skip_lines(cap.err, "infer", bad)
    assert "2 image(s)" in cap.out
    doc = json.loads((out / "detections.json").read_text())
    assert len(doc["images"]) == 2 and sorted(f["error"] for f in doc["failed"]) == [
        "cannot decode", "cannot decode", "empty file"]


def test_infer_none_readable_is_exit_2(tiny_onnx, photos, tmp_path, capsys) -> None:
    _, bad = photos
    assert main(["infer", "--model", str(tiny_onnx), *map(str, bad), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    check_skip_lines(capsys.readouterr().err, "infer", bad)


def test_compare(tiny_onnx, photos, tmp_path, capsys) -> None:
    d, bad = photos
    js = tmp_path / "c.json"
    assert main(["compare", str(tiny_onnx), str(tiny_onnx), "--image-dir", str(d), "--quiet", "--json", str(js)]) == 1
    cap = capsys.readouterr()
    check_skip_lines(cap.err, "compare", bad)
    rec = json.loads(js.read_text())
    assert rec["num_images"] == 2 and len(rec["skipped"]) == 3


def test_compare_none_readable_is_exit_2(tiny_onnx, tmp_path, capsys) -> None:
    bad = write_corrupt_images(tmp_path / "bad")
    assert main(["compare", str(tiny_onnx), str(tiny_onnx), "--image-dir", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("detnet-trt compare: error: no image of ")
    assert len([ln for ln in err.splitlines() if "warning: cannot read image" in ln]) == len(bad)
