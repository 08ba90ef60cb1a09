"""COCO layout resolution, category id <-> index mapping with non-contiguous ids, box reading."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detnet_trt.core.errors import InputError
from detnet_trt.data.coco import CocoDataset, list_images, resolve_coco_dir, resolve_dataset


def _write_coco(root, split="val", images_sub="images", cats=((90, "zebra"), (5, "bus"), (17, "cat"))):
    (root / "annotations").mkdir(parents=True)
    img_dir = root / images_sub / split if images_sub else root / split
    img_dir.mkdir(parents=True)
    for i in (1, 2):
        cv2.imwrite(str(img_dir / f"{i:03d}.png"), np.full((40, 60, 3), 10 * i, np.uint8))
    data = {
        "images": [
            {"id": 2, "file_name": "002.png", "width": 60, "height": 40},
            {"id": 1, "file_name": "001.png", "width": 60, "height": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 90, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [5, 5, 4, 3], "area": 12, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 17, "bbox": [0, 0, 60, 40], "area": 2400, "iscrowd": 1},
            {"id": 4, "image_id": 2, "category_id": 17, "bbox": [3, 3, 0, 5], "area": 0, "iscrowd": 0},
        ],
        "categories": [{"id": c, "name": n} for c, n in cats],
    }
    ann = root / "annotations" / f"instances_{split}.json"
    ann.write_text(json.dumps(data))
    return ann, img_dir


@pytest.mark.parametrize("images_sub", ["images", ""])
def test_resolve_both_layouts(tmp_path, images_sub):
    ann, img_dir = _write_coco(tmp_path, images_sub=images_sub)
    assert resolve_coco_dir(tmp_path, "val") == (ann, img_dir)
    assert resolve_dataset(tmp_path) == (ann, img_dir)
    assert resolve_dataset(None, ann_file=ann, image_dir=img_dir) == (ann, img_dir)
    assert CocoDataset.from_dir(tmp_path).image_dir == img_dir


def test_resolve_errors(tmp_path):
    _write_coco(tmp_path)
    with pytest.raises(InputError, match="instances_val.json: pick one with --split"):
        resolve_coco_dir(tmp_path, "train")
    with pytest.raises(InputError, match="does not exist"):
        resolve_coco_dir(tmp_path / "nope")
    with pytest.raises(InputError, match="go together"):
        resolve_dataset(None, ann_file=tmp_path / "annotations/instances_val.json")
    with pytest.raises(InputError, match="no dataset"):
        resolve_dataset(None)
    (tmp_path / "annotations" / "instances_test.json").write_text("{}")
    with pytest.raises(InputError, match="no image folder"):
        resolve_coco_dir(tmp_path, "test")
    with pytest.raises(InputError, match="not a COCO instances file"):
        CocoDataset(tmp_path / "annotations" / "instances_test.json", tmp_path)


def test_non_contiguous_mapping(tmp_path):
    ds = CocoDataset(*_write_coco(tmp_path))
    assert ds.cat_ids == [5, 17, 90]  # sorted by id, whatever the file's order
    assert ds.class_names == ["bus", "cat", "zebra"]
    assert ds.cat_id_to_index == {5: 0, 17: 1, 90: 2}
    assert ds.to_index([90, 5, 17]).tolist() == [2, 0, 1]
    assert ds.to_cat_id([2, 0, 1]).tolist() == [90, 5, 17]
    assert ds.to_cat_id(ds.to_index(ds.cat_ids)).tolist() == ds.cat_ids
    with pytest.raises(InputError, match="category id 6"):
        ds.to_index([6])
    with pytest.raises(InputError, match="out of range"):
        ds.to_cat_id([3])


def test_items_boxes_xyxy_and_crowd(tmp_path):
    ds = CocoDataset(*_write_coco(tmp_path))
    assert len(ds) == 2 and ds.image_ids == [1, 2]
    item = ds[0]
    assert item.image_id == 1 and item.path.name == "001.png"
    np.testing.assert_array_equal(item.boxes, [[1, 2, 11, 22], [5, 5, 9, 8]])
    assert item.boxes.dtype == np.float32 and item.labels.dtype == np.int64
    assert item.labels.tolist() == [2, 0] and item.category_ids.tolist() == [90, 5]
    assert item.load().shape == (40, 60, 3)
    assert len(ds[1].boxes) == 0  # degenerate box dropped
    crowd = CocoDataset(ds.ann_file, ds.image_dir, include_crowd=True)[0]
    assert crowd.labels.tolist() == [2, 0, 1] and crowd.iscrowd.tolist() == [False, False, True]
    ds.check_files()
    assert [p.name for p in list_images(ds.image_dir)] == ["001.png", "002.png"]


def test_bad_annotations(tmp_path):
    ann, img_dir = _write_coco(tmp_path)
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 4
    ann.write_text(json.dumps(data))
    with pytest.raises(InputError, match="annotation 1 has category 4, which is not in"):
        CocoDataset(ann, img_dir)
    ann.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        CocoDataset(ann, img_dir)


def test_missing_image_file(tmp_path):
    ann, img_dir = _write_coco(tmp_path)
    (img_dir / "002.png").unlink()
    with pytest.raises(InputError, match="002.png listed in"):
        CocoDataset(ann, img_dir).check_files()
