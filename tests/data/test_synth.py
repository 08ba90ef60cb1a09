"""Synthetic COCO dataset: layout, determinism, annotation sanity, non-contiguous ids."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detnet_trt.cli import main
from detnet_trt.core.errors import InputError, OutputExistsError
from detnet_trt.data.synth import CATEGORIES, make_synth_dataset, render_scene


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return make_synth_dataset(tmp_path_factory.mktemp("synth"), images=10, seed=5, size=(96, 128), progress=False)


def _load(root, split):
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def test_layout_and_split_sizes(synth_dir):
    train, val = _load(synth_dir, "train"), _load(synth_dir, "val")
    assert len(train["images"]) == 8 and len(val["images"]) == 2
    for split, data in (("train", train), ("val", val)):
        for im in data["images"]:
            img = cv2.imread(str(synth_dir / "images" / split / im["file_name"]))
            assert img is not None and img.shape == (96, 128, 3)
            assert (im["height"], im["width"]) == (96, 128)


def test_categories_are_non_contiguous(synth_dir):
    ids = [c["id"] for c in _load(synth_dir, "train")["categories"]]
    assert ids == [cid for cid, _ in CATEGORIES]
    assert ids != list(range(1, len(ids) + 1))
    assert len({c["name"] for c in _load(synth_dir, "train")["categories"]}) == len(ids) >= 5


def test_annotations_are_valid_boxes(synth_dir):
    data = _load(synth_dir, "train")
    assert data["annotations"], "scenes must contain objects"
    valid_ids = {c["id"] for c in data["categories"]}
    image_ids = {im["id"] for im in data["images"]}
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        assert a["category_id"] in valid_ids and a["image_id"] in image_ids
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 96
        assert 0 < a["area"] <= w * h and a["iscrowd"] == 0


def test_deterministic_for_seed(tmp_path):
    a = make_synth_dataset(tmp_path / "a", images=4, seed=1, size=(64, 64), progress=False)
    b = make_synth_dataset(tmp_path / "b", images=4, seed=1, size=(64, 64), progress=False)
    c = make_synth_dataset(tmp_path / "c", images=4, seed=2, size=(64, 64), progress=False)
    ja, jb, jc = (_load(r, "train") for r in (a, b, c))
    assert ja == jb
    assert ja["annotations"] != jc["annotations"]
    for im in ja["images"]:
        pa = (a / "images/train" / im["file_name"]).read_bytes()
        assert pa == (b / "images/train" / im["file_name"]).read_bytes()


def test_boxes_cover_drawn_objects():
    """The pixels inside each box differ from a plain background: the box is on something drawn."""
    rng = np.random.default_rng(0)
    counts = np.zeros(len(CATEGORIES), int)
    for _ in range(30):
        img, recs = render_scene(rng, (160, 160))
        for r in recs:
            counts[r["class_index"]] += 1
            x, y, w, h = r["bbox"]
            assert w >= 2 and h >= 2 and r["area"] >= 20
    assert (counts > 0).all(), f"every class appears in 30 scenes: {counts}"


def test_refuses_overwrite_and_bad_args(tmp_path):
    make_synth_dataset(tmp_path, images=2, size=(48, 48), progress=False)
    with pytest.raises(OutputExistsError, match="--force"):
        make_synth_dataset(tmp_path, images=2, size=(48, 48), progress=False)
    make_synth_dataset(tmp_path, images=2, size=(48, 48), progress=False, force=True)
    with pytest.raises(InputError, match="at least 2"):
        make_synth_dataset(tmp_path / "x", images=1, progress=False)


def test_cli(tmp_path, capsys):
    rc = main(["synth", "--out", str(tmp_path / "d"), "--images", "3", "--size", "64x80", "--seed", "4"])
    assert rc == 0
    assert (tmp_path / "d/annotations/instances_val.json").is_file()
    assert cv2.imread(str(next((tmp_path / "d/images/train").iterdir()))).shape == (64, 80, 3)
    assert main(["synth", "--out", str(tmp_path / "d"), "--images", "3"]) == 2
    assert "already exists" in capsys.readouterr().err
