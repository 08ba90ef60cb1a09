"""Malformed COCO annotation files: one line naming the file, the record and the problem, before any
work, in the library (read_coco_json / CocoDataset) and in eval, train and calib-set (exit 2)."""

from __future__ import annotations

import copy
import json
import logging

import cv2
import numpy as np
import pytest

from detnet_trt.cli import main
from detnet_trt.core.errors import InputError
from detnet_trt.data.coco import CocoDataset, read_coco_json

GOOD = {
    "images": [{"id": 1, "file_name": "001.png", "width": 64, "height": 48},
               {"id": 2, "file_name": "002.png", "width": 64, "height": 48}],
    "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0},
                    {"id": 8, "image_id": 2, "category_id": 5, "bbox": [4, 4, 8, 8], "area": 64, "iscrowd": 0}],
    "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "bus"}],
}


def _ann(**changes):
    data = copy.deepcopy(GOOD)
    data["annotations"][0].update(changes)
    for key in [k for k, v in changes.items() if v is ...]:
        del data["annotations"][0][key]
    return data


# (the file's content, what the one line must say)
MALFORMED = {
    "negative width": (_ann(bbox=[1, 2, -10, 20]), "annotation 7 bbox [1, 2, -10, 20] has a negative width"),
    "negative height": (_ann(bbox=[1, 2, 10, -1]), "annotation 7 bbox [1, 2, 10, -1] has a negative height"),
    "non-numeric": (_ann(bbox=[1, "two", 10, 20]), "annotation 7 bbox [1, 'two', 10, 20] holds a value that is not a"),
    "NaN": (_ann(bbox=[1, 2, float("nan"), 20]), "annotation 7 bbox [1, 2, nan, 20] holds a value that is not a"),
    "wrong length": (_ann(bbox=[1, 2, 10]), "annotation 7 bbox [1, 2, 10] is not 4 numbers"),
    "bbox missing": (_ann(bbox=...), "annotation 7 has no bbox"),
    "bbox not a list": (_ann(bbox="1,2,3,4"), "annotation 7 bbox '1,2,3,4' is not 4 numbers"),
    "image id missing": (_ann(image_id=...), "annotation 7 has no image_id"),
    "unknown image": (_ann(image_id=99), "annotation 7 refers to image 99, which is not in 'images'"),
    "category missing": (_ann(category_id=...), "annotation 7 has no category_id"),
    "unknown category": (_ann(category_id=4), "annotation 7 has category 4, which is not in 'categories'"),
    "annotation id missing": (_ann(id=...), "annotation #0 has no id"),
    "annotation id twice": (_ann(id=8), "annotation 8 appears twice"),
    "no categories": ({**GOOD, "categories": []}, "no categories"),
    "category without id": ({**GOOD, "categories": [{"name": "cat"}]}, "category #0 has no id"),
    "category without name": ({**GOOD, "categories": [{"id": 3}, {"id": 5, "name": "bus"}]},
                              "category 3 has no name"),
    "image without id": ({**GOOD, "images": [{"file_name": "a.png"}]}, "image #0 has no id"),
    "image id twice": ({**GOOD, "images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}]},
                       "image id 1 appears twice"),
    "image without file_name": ({**GOOD, "images": [{"id": 1}, {"id": 2, "file_name": "b.png"}]},
                                "image 1 has no file_name"),
    "annotations not a list": ({**GOOD, "annotations": {"id": 7}}, "'annotations' is a dict, not a list"),
    "annotation not an object": ({**GOOD, "annotations": [[1, 2]]}, "annotations[0] is a list, not an object"),
}


def _dataset(root, data) -> tuple:
    ann = root / "annotations" / "instances_val.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(data))
    for split in ("val", "train"):
        img_dir = root / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        for name in ("001.png", "002.png"):
            cv2.imwrite(str(img_dir / name), np.full((48, 64, 3), 40, np.uint8))
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return ann, root / "images" / "val"


@pytest.mark.parametrize("case", list(MALFORMED))
def test_read_coco_json_names_the_record_and_the_problem(case, tmp_path) -> None:
    data, expected = MALFORMED[case]
    ann, img_dir = _dataset(tmp_path, data)
    with pytest.raises(InputError) as err:
        CocoDataset(ann, img_dir)
    text = str(err.value)
    assert text.startswith(f"{ann}: ") and expected in text and "\n" not in text, text


def test_a_good_file_reads_with_ids_normalised_and_area_filled(tmp_path) -> None:
    data = copy.deepcopy(GOOD)
    data["annotations"][0]["image_id"] = "1"  # ids written as strings or whole floats still match
    data["annotations"][1]["category_id"] = 5.0
    del data["annotations"][1]["area"]
    ann, img_dir = _dataset(tmp_path, data)
    ds = CocoDataset(ann, img_dir)
    assert [len(ds.annotations(i)) for i in ds.image_ids] == [1, 1]
    assert ds.raw["annotations"][1]["area"] == 64.0 and ds.raw["annotations"][0]["image_id"] == 1


def test_zero_area_boxes_are_kept_out_of_the_targets_and_counted(tmp_path, caplog) -> None:
    """COCO train2017 itself has two zero-height boxes (annotations 918 and 2206849): refusing
    them would refuse COCO; they are left out of the targets and named in a warning."""
    ann, img_dir = _dataset(tmp_path, _ann(bbox=[1, 2, 10, 0]))
    with caplog.at_level(logging.WARNING, logger="detnet_trt.data.coco"):
        ds = CocoDataset(ann, img_dir)
    assert len(ds[0].boxes) == 0 and len(ds[1].boxes) == 1
    assert "1 box(es) of zero width or height left out of the targets (annotation 7)" in caplog.text
    assert read_coco_json(ann)["annotations"][0]["bbox"] == [1, 2, 10, 0]


CLI_CASES = ["negative width", "non-numeric", "wrong length", "image id missing", "unknown category"]


def _one_line(capsys, command: str, expected: str) -> None:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"detnet-trt {command}: error: ") and expected in lines[0], lines[0]
    assert "instances_" in lines[0]  # the file is named


@pytest.mark.parametrize("case", CLI_CASES)
def test_eval_exits_2_before_loading_the_model(case, tmp_path, capsys) -> None:
    data, expected = MALFORMED[case]
    _dataset(tmp_path / "d", data)
    summary = tmp_path / "s.json"
    rc = main(["eval", "--model", str(tmp_path / "never_loaded.onnx"), "--data", str(tmp_path / "d"),
               "--summary", str(summary), "--quiet"])
    assert rc == 2
    _one_line(capsys, "eval", expected)
    assert not summary.exists()


@pytest.mark.parametrize("case", CLI_CASES)
def test_train_exits_2_before_training(case, tmp_path, capsys) -> None:
    data, expected = MALFORMED[case]
    root = tmp_path / "d"
    _dataset(root, GOOD)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    out = tmp_path / "c.pt"
    rc = main(["train", "--data", str(root), "-o", str(out), "--epochs", "1", "--batch", "2", "--imgsz", "64",
               "--workers", "0", "--device", "cpu", "--no-progress"])
    assert rc == 2
    _one_line(capsys, "train", expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_train_reads_the_val_file_before_the_first_epoch(tmp_path, capsys) -> None:
    root = tmp_path / "d"
    _dataset(root, MALFORMED["negative width"][0])
    (root / "annotations" / "instances_train.json").write_text(json.dumps(GOOD))
    rc = main(["train", "--data", str(root), "-o", str(tmp_path / "c.pt"), "--epochs", "1", "--batch", "2",
               "--imgsz", "64", "--workers", "0", "--device", "cpu", "--no-progress"])
    assert rc == 2
    _one_line(capsys, "train", "instances_val.json: annotation 7 bbox [1, 2, -10, 20] has a negative width")


@pytest.mark.parametrize("case", CLI_CASES)
def test_calib_set_exits_2_without_writing(case, tmp_path, capsys) -> None:
    data, expected = MALFORMED[case]
    ann, img_dir = _dataset(tmp_path / "d", data)
    out = tmp_path / "set.txt"
    rc = main(["calib-set", "--images", str(img_dir), "--annotations", str(ann), "--num", "2", "--min-images", "1",
               "-o", str(out)])
    assert rc == 2
    _one_line(capsys, "calib-set", expected)
    assert not out.exists()
