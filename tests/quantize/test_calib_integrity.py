"""What quantize verifies before calibrating (issue 16, "Integrity is checked where it is
recorded"): the FP32 ONNX's recorded graph hash, the calibration images' recorded hashes (a
changed image makes the set stale), and the minimum of readable images ``calib-set`` applied."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from corrupt import flip_middle_byte, flip_weight_byte

from detnet_trt.core.errors import IncompatibleError, InputError, ModelFileError
from detnet_trt.quantize.calibrate import check_quantized, is_qdq_onnx, quantize_onnx
from detnet_trt.quantize.calibset import MIN_IMAGES, check_calib_images, make_calib_set, read_calib_set


def _images(d: Path, n: int, seed: int = 0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(d / f"{i:03d}.png"), cv2.resize(small, (96 + 4 * i, 80), interpolation=cv2.INTER_CUBIC))
    return d




def _change(image: Path) -> None:
    """Rewrite ``image`` as another, still readable, image."""
    img = cv2.imread(str(image))
    cv2.imwrite(str(image), 255 - img)


def test_set_records_each_image_hash_and_its_minimum(tmp_path: Path) -> None:
    cs = read_calib_set(make_calib_set(_images(tmp_path / "imgs", 6), tmp_path / "set.txt", num=6, min_images=4))
    assert len(cs.file_sha256) == 6 and all(len(h) == 64 for h in cs.file_sha256)
    assert cs.header["min_images"] == "4" and cs.min_images == 4
    assert check_calib_images(cs) == []


def test_quantize_refuses_a_corrupt_fp32_onnx(tiny_onnx, tmp_path: Path) -> None:
    calib = make_calib_set(_images(tmp_path / "imgs", 4), tmp_path / "set.txt", num=4, min_images=1)
    bad = flip_weight_byte(Path(tiny_onnx), tmp_path / "flipped.onnx")
    with pytest.raises(ModelFileError, match=r"flipped\.onnx is corrupt: its graph hashes to sha256"):
        quantize_onnx(bad, calib, tmp_path / "q.onnx", progress=False)
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_refuses_a_changed_image_as_stale(tiny_onnx, tmp_path: Path) -> None:
    calib = make_calib_set(_images(tmp_path / "imgs", 6), tmp_path / "set.txt", num=6, min_images=1)
    victim = read_calib_set(calib).files[3]
    _change(victim)
    with pytest.raises(IncompatibleError, match=rf"set\.txt is stale: 1 of 6 image\(s\) changed .*{victim.name}.*"
                       r"detnet-trt calib-set --images .* --force") as err:
        quantize_onnx(tiny_onnx, calib, tmp_path / "q.onnx", progress=False)
    assert "\n" not in str(err.value)


def test_quantize_refuses_missing_images_below_the_calib_set_minimum(tiny_onnx, tmp_path: Path) -> None:
    imgs = _images(tmp_path / "imgs", 32)
    calib = make_calib_set(imgs, tmp_path / "set.txt", num=32)  # calib-set's default minimum, 16
    files = read_calib_set(calib).files
    for f in files[2:]:
        f.unlink()
    with pytest.raises(InputError, match=rf"only 2 of 32 calibration images are readable \(need at least {MIN_IMAGES}\)"):
        quantize_onnx(tiny_onnx, calib, tmp_path / "q.onnx", progress=False)


def test_old_set_without_hashes_gets_the_default_minimum_and_no_content_check(tmp_path: Path) -> None:
    imgs = _images(tmp_path / "imgs", 20)
    calib = make_calib_set(imgs, tmp_path / "set.txt", num=20)
    lines = [ln.split("\t")[0] for ln in calib.read_text().splitlines() if not ln.startswith("# min_images")]
    old = tmp_path / "old.txt"
    old.write_text("\n".join(lines) + "\n")
    cs = read_calib_set(old)
    assert cs.min_images == MIN_IMAGES and not any(cs.file_sha256)
    _change(cs.files[0])
    assert check_calib_images(cs) == []  # nothing recorded: nothing to compare
    for f in cs.files[:5]:
        f.unlink()
    with pytest.raises(InputError, match=r"only 15 of 20"):
        check_calib_images(cs)


def test_shipped_demo_set_still_reads() -> None:
    cs = read_calib_set(Path(__file__).resolve().parents[2] / "calibration" / "demo_synth_seed2026.txt")
    assert len(cs) == 48 and cs.min_images == MIN_IMAGES


def test_quantized_onnx_is_sealed_and_verified(tiny_onnx, tmp_path: Path) -> None:
    calib = make_calib_set(_images(tmp_path / "imgs", 4), tmp_path / "set.txt", num=4, min_images=1)
    q = quantize_onnx(tiny_onnx, calib, tmp_path / "q.onnx", progress=False)
    assert is_qdq_onnx(q) and check_quantized(q, fp32=tiny_onnx, calib=calib)
    bad = flip_weight_byte(q, tmp_path / "q_flipped.onnx")
    with pytest.raises(ModelFileError, match=r"q_flipped\.onnx is corrupt"):
        is_qdq_onnx(bad)


def test_quantize_verifies_an_fp32_onnx_with_external_data(tiny_onnx, tmp_path: Path) -> None:
    onnx.save_model(onnx.load(str(tiny_onnx)), str(tmp_path / "m.onnx"), save_as_external_data=True,
                    location="m.weights")
    assert not is_qdq_onnx(tmp_path / "m.onnx")  # loads (with its weights) and verifies
    flip_middle_byte(tmp_path / "m.weights")
    with pytest.raises(ModelFileError, match=r"m\.onnx is corrupt"):
        is_qdq_onnx(tmp_path / "m.onnx")
