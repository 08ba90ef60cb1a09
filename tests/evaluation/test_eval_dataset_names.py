"""eval of an imported two-stage DetNet_pytorch model on datasets named as theirs (issue 13): VOC's 20
class names, and COCO 2017's 80 with its real, non-contiguous category ids. Classes are matched by
name, so each detection's category id must be the dataset's id of the detected class's name."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fpn_checkpoint import their_checkpoint

from detnet_trt.cli import main
from detnet_trt.models.two_stage.classes import DATASETS

# COCO 2017's category ids in their order (1..90 with ten left out), as in instances_val2017.json.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def _dataset(root: Path, names: tuple[str, ...], ids: list[int]) -> None:
    rng = np.random.default_rng(0)
    (root / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(3):
        img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
        cv2.rectangle(img, (20, 10), (60, 50), (255, 255, 255), -1)
        cv2.imwrite(str(root / "val" / f"{i}.jpg"), img)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 64, "width": 96})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": ids[i % len(ids)], "bbox": [20, 10, 40, 40],
                     "area": 1600, "iscrowd": 0})
    cats = [{"id": c, "name": n} for c, n in zip(ids, names)]
    (root / "annotations" / "instances_val.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


@pytest.fixture(scope="module", params=["voc", "coco"])
def imported(request, tmp_path_factory) -> tuple[str, Path]:
    kind = request.param
    d = tmp_path_factory.mktemp(kind)
    torch.save(their_checkpoint(num_classes=len(DATASETS[kind]) + 1), d / "theirs.pth")
    assert main(["import-detnet-pytorch", str(d / "theirs.pth"), "--classes", kind, "-o", str(d / "model.pt"),
                 "--input-size", "64x96", "--proposals", "20"]) == 0
    return kind, d


def test_eval_maps_classes_to_the_datasets_category_ids(imported) -> None:
    kind, d = imported
    names = DATASETS[kind]
    ids = list(range(1, 21)) if kind == "voc" else COCO_IDS
    _dataset(d / "data", names, ids)
    rc = main(["eval", "--model", str(d / "model.pt"), "--data", str(d / "data"), "--summary", str(d / "s.json"),
               "--json", str(d / "r.json"), "--quiet"])
    assert rc == 0
    summary = json.loads((d / "s.json").read_text())
    assert summary, "no metrics written"
    results = json.loads((d / "r.json").read_text())
    assert results, "the random-weight model detected nothing at conf 0.001"
    assert {r["category_id"] for r in results} <= set(ids)
    if kind == "coco":  # classes past the first gap in COCO's ids (12) were detected: an index + 1 mapping would fail
        assert max(r["category_id"] for r in results) > 12


def test_eval_on_the_other_datasets_names_is_one_error(imported, capsys) -> None:
    kind, d = imported
    other = "coco" if kind == "voc" else "voc"
    names = DATASETS[other]
    _dataset(d / f"other_{other}", names, list(range(1, len(names) + 1)))
    rc = main(["eval", "--model", str(d / "model.pt"), "--data", str(d / f"other_{other}"), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "do not match" in err and "Traceback" not in err
