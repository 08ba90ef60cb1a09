"""``calib-set`` and ``quantize`` with corrupt images: named, skipped, counted, the set / the Q/DQ
model still made, exit 1 (``EXIT_SKIPPED_IMAGES``, detnet_trt/core/images.py)."""

from __future__ import annotations

import cv2
import numpy as np
from corrupt import write_corrupt_images

from detnet_trt.cli import main
from detnet_trt.quantize.calibset import make_calib_set, read_calib_set


def _good(folder, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"g{i}.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))


def test_calib_set_skips_counts_and_exits_1(tmp_path, capsys) -> None:
    imgs = tmp_path / "imgs"
    _good(imgs, 4)
    bad = write_corrupt_images(imgs)
    out = tmp_path / "set.txt"
    assert main(["calib-set", "--images", str(imgs), "--num", "7", "--min-images", "1", "-o", str(out)]) == 1
    cap = capsys.readouterr()
    assert len(read_calib_set(out)) == 4 and "4 images" in cap.out
    lines = [ln for ln in cap.err.strip().splitlines() if ln.startswith("detnet-trt ")]  # not the progress bar
    assert len(lines) == 1 and lines[0].startswith("detnet-trt calib-set: error: skipped 3 unreadable: ")
    assert all(p.name in lines[0] for p in bad)


def test_quantize_skips_counts_and_exits_1(tiny_onnx, tmp_path, capsys, caplog) -> None:
    imgs = tmp_path / "imgs"
    _good(imgs, 5)
    calib = make_calib_set(imgs, tmp_path / "set.txt", num=5, min_images=1)
    victim = read_calib_set(calib).files[1]
    victim.write_bytes(b"")  # damaged after the set was made: unreadable, skipped (not stale)
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(tiny_onnx), "--calib", str(calib), "-o", str(out), "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert out.is_file() and "4 calibration images, 1 skipped" in cap.out
    assert f"skipped 1 unreadable image(s): {victim.name} (empty file)" in caplog.text  # stderr outside pytest
    assert cap.err.strip().splitlines()[-1] == ("detnet-trt quantize: error: 1 calibration image(s) could not be "
                                                "read and were skipped (named above)")
