"""Calibration sets: seeded, stratified, hashed; unreadable images skipped, counted and named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detnet_trt.core.errors import IncompatibleError, InputError, OutputExistsError
from detnet_trt.quantize.calibset import list_hash, make_calib_set, read_calib_set


def _write_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        name = f"{i:04d}.jpg"
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (24 + i % 5, 32, 3), dtype=np.uint8))
        names.append(name)
    return names


@pytest.fixture()
def coco(tmp_path: Path) -> tuple[Path, Path]:
    """30 images; category 90 ('rare') appears in one image only, category 1 in all."""
    img_dir = tmp_path / "train"
    names = _write_images(img_dir, 30)
    images = [{"id": i + 1, "file_name": n, "width": 32, "height": 24} for i, n in enumerate(names)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
            for i in range(30)]
    anns += [{"id": 100 + i, "image_id": i + 1, "category_id": 3, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0}
             for i in range(0, 30, 3)]
    anns.append({"id": 999, "image_id": 17, "category_id": 90, "bbox": [3, 3, 5, 5], "area": 25, "iscrowd": 0})
    cats = [{"id": 1, "name": "common"}, {"id": 3, "name": "mid"}, {"id": 90, "name": "rare"}]
    ann_file = tmp_path / "instances_train.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return img_dir, ann_file


def test_same_inputs_same_list_and_seed_changes_it(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    _write_images(img_dir, 40)
    a = read_calib_set(make_calib_set(img_dir, tmp_path / "a.txt", num=10, seed=0, min_images=1))
    b = read_calib_set(make_calib_set(img_dir, tmp_path / "b.txt", num=10, seed=0, min_images=1))
    c = read_calib_set(make_calib_set(img_dir, tmp_path / "c.txt", num=10, seed=1, min_images=1))
    assert [f.name for f in a.files] == [f.name for f in b.files]
    assert a.sha256 == b.sha256 == list_hash(f.name for f in a.files)
    assert a.sha256 != c.sha256
    assert len(a) == 10 and all(f.is_file() for f in a.files)
    assert a.header["rule"] == "uniform/v1" and a.header["seed"] == "0" and a.header["source"]


def test_stratified_set_contains_the_rare_class(coco: tuple[Path, Path], tmp_path: Path) -> None:
    img_dir, ann = coco
    cs = read_calib_set(make_calib_set(img_dir, tmp_path / "s.txt", annotations=ann, num=3, min_images=1))
    assert cs.header["rule"] == "stratified-rarest-first/v1"
    assert "0016.jpg" in [f.name for f in cs.files]  # image id 17, the only 'rare' one
    assert cs.header["categories covered"].startswith("3 of 3")
    assert "sha256=" in cs.header["annotations"]


def test_corrupt_images_are_skipped_counted_and_named(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    _write_images(img_dir, 6)
    (img_dir / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (img_dir / "empty.png").write_bytes(b"")
    cs = read_calib_set(make_calib_set(img_dir, tmp_path / "s.txt", num=100, min_images=1))
    assert len(cs) == 6
    assert cs.header["skipped"].startswith("2 unreadable")
    assert "broken.jpg" in cs.header["skipped"] and "empty.png" in cs.header["skipped"]
    assert all(f.name not in ("broken.jpg", "empty.png") for f in cs.files)


def test_too_few_readable_images_is_an_error(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    _write_images(img_dir, 3)
    (img_dir / "bad.jpg").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"only 3 readable images .*bad\.jpg.*at least 8"):
        make_calib_set(img_dir, tmp_path / "s.txt", num=20, min_images=8)
    assert not (tmp_path / "s.txt").exists()


def test_edited_set_is_refused_and_output_not_overwritten(tmp_path: Path) -> None:
    img_dir = tmp_path / "imgs"
    _write_images(img_dir, 5)
    out = make_calib_set(img_dir, tmp_path / "s.txt", num=5, min_images=1)
    with pytest.raises(OutputExistsError, match="--force"):
        make_calib_set(img_dir, out, num=5, min_images=1)
    out.write_text(out.read_text() + "extra.jpg\n")
    with pytest.raises(IncompatibleError, match="changed after it was made"):
        read_calib_set(out)
    with pytest.raises(InputError, match="folder"):
        read_calib_set(img_dir)


def test_paths_resolve_relative_to_the_set_file_and_override(tmp_path: Path) -> None:
    img_dir = tmp_path / "data" / "imgs"
    _write_images(img_dir, 4)
    out = make_calib_set(img_dir, tmp_path / "sets" / "s.txt", num=4, min_images=1)
    cs = read_calib_set(out)
    assert cs.header["root"] == "../data/imgs"
    assert all(f.is_file() for f in cs.files)
    moved = tmp_path / "elsewhere"
    img_dir.rename(moved)
    cs2 = read_calib_set(out, images_dir=moved)
    assert all(f.is_file() for f in cs2.files) and cs2.sha256 == cs.sha256


def test_cli_calib_set(coco: tuple[Path, Path], tmp_path: Path) -> None:
    img_dir, ann = coco
    out = tmp_path / "set.txt"
    cmd = [sys.executable, "-m", "detnet_trt", "calib-set", "--images", str(img_dir), "--annotations", str(ann),
           "--num", "5", "--min-images", "1", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "5 images" in r.stdout and out.is_file()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_committed_demo_set_is_reproducible(tmp_path: Path) -> None:
    """calibration/demo_synth_seed2026.txt is what calib-set makes from the demo's data."""
    from detnet_trt.data.synth import make_synth_dataset

    committed = read_calib_set(Path(__file__).parents[2] / "calibration" / "demo_synth_seed2026.txt")
    root = make_synth_dataset(tmp_path / "data", images=100, seed=2026, val_fraction=0.4, progress=False)
    made = read_calib_set(make_calib_set(
        Path(root) / "images" / "train", tmp_path / "set.txt",
        annotations=Path(root) / "annotations" / "instances_train.json", num=48, seed=0,
    ))
    assert made.sha256 == committed.sha256
    assert made.header["annotations"] == committed.header["annotations"]
