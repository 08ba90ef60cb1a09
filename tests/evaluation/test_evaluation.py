"""COCO metrics: hand-made cases with known answers, agreement with pycocotools, id mapping,
and evaluate() end to end through the deployment pipeline (oracle backend and the tiny ONNX)."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest

from detnet_trt.cli import main
from detnet_trt.core.errors import IncompatibleError, InputError, OutputExistsError
from detnet_trt.core.meta import ModelMeta
from detnet_trt.data.coco import CocoDataset
from detnet_trt.evaluation.coco_eval import (
    METRIC_KEYS,
    EvalOptions,
    class_to_category_ids,
    coco_bbox_metrics,
    evaluate,
)
from detnet_trt.runtime.backends.base import Backend
from detnet_trt.runtime.letterbox import letterbox_geometry

CATS = [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}]  # non-contiguous on purpose


def _gt(boxes_per_image):
    """boxes_per_image: list (per image) of list of (category_id, [x, y, w, h])."""
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": i, "file_name": f"{i:03d}.png", "width": 200, "height": 100})
        for cid, (x, y, w, h) in boxes:
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": cid, "bbox": [x, y, w, h], "area": w * h,
                 "iscrowd": 0}
            )
    return {"images": images, "annotations": anns, "categories": CATS}


def _det(image_id, cid, bbox, score):
    return {"image_id": image_id, "category_id": cid, "bbox": list(bbox), "score": score}


# Objects of "medium" COCO area (32^2 < area < 96^2).
GT = _gt([[(3, [10, 10, 40, 40]), (11, [100, 20, 50, 60])], [(3, [5, 50, 40, 40]), (3, [120, 10, 40, 40])]])


def test_perfect_detections_score_100():
    dets = [_det(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in GT["annotations"]]
    metrics, per_class = coco_bbox_metrics(GT, dets)
    assert set(metrics) == set(METRIC_KEYS)
    for k in ("AP", "AP50", "AP75", "APm", "AR10", "AR100", "ARm"):
        assert metrics[k] == pytest.approx(100.0), k
    assert metrics["APs"] == -1 and metrics["APl"] == -1  # no small / large ground truth: undefined
    assert metrics["AR1"] == pytest.approx(100 * (1 + 1 + 0.5) / 3)  # image 2 holds two cats: 1 det/img finds one
    assert per_class["cat"]["AP"] == pytest.approx(100.0) and per_class["dog"]["AP"] == pytest.approx(100.0)
    assert per_class["cat"]["num_gt"] == 3 and per_class["dog"]["num_gt"] == 1


def test_half_the_ground_truth_missed():
    gt = _gt([[(3, [10, 10, 40, 40]), (3, [100, 10, 40, 40])], [(3, [10, 50, 40, 40]), (3, [100, 50, 40, 40])]])
    dets = [_det(1, 3, [10, 10, 40, 40], 0.9), _det(2, 3, [10, 50, 40, 40], 0.8)]
    metrics, per_class = coco_bbox_metrics(gt, dets)
    # precision 1 up to recall 0.5, nothing beyond: 51 of COCO's 101 recall points
    assert metrics["AP"] == pytest.approx(100 * 51 / 101, abs=1e-3)
    assert metrics["AR100"] == pytest.approx(50.0)
    assert per_class["dog"]["AP"] == -1  # no dog ground truth


def test_false_positive_ranked_first_halves_ap():
    gt = _gt([[(3, [10, 10, 40, 40])]])
    dets = [_det(1, 3, [140, 50, 40, 40], 0.9), _det(1, 3, [10, 10, 40, 40], 0.8)]
    metrics, _ = coco_bbox_metrics(gt, dets)
    assert metrics["AP"] == pytest.approx(50.0)
    assert metrics["AR100"] == pytest.approx(100.0)


def test_wrong_class_and_no_detections_score_zero():
    wrong = [_det(a["image_id"], 11 if a["category_id"] == 3 else 3, a["bbox"], 0.9) for a in GT["annotations"]]
    assert coco_bbox_metrics(GT, wrong)[0]["AP"] == 0.0
    metrics, per_class = coco_bbox_metrics(GT, [])
    assert metrics["AP"] == 0.0 and metrics["AR100"] == 0.0 and per_class["cat"]["AP"] == 0.0


def test_matches_pycocotools_directly():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    dets = []
    for a in GT["annotations"]:
        for _ in range(3):
            x, y, w, h = (np.asarray(a["bbox"], float) + rng.normal(0, 4, 4)).tolist()
            dets.append(_det(a["image_id"], int(rng.choice([3, 11])), [x, y, abs(w), abs(h)], float(rng.random())))
    ours, _ = coco_bbox_metrics(GT, dets)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(GT))
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(dets))), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    for k, v in zip(METRIC_KEYS, ev.stats):
        assert ours[k] == pytest.approx(100 * v if v >= 0 else -1, abs=1e-3), k
    assert 0 < ours["AP"] < 100


def test_image_subset():
    dets = [_det(1, a["category_id"], a["bbox"], 0.9) for a in GT["annotations"] if a["image_id"] == 1]
    assert coco_bbox_metrics(GT, dets, image_ids=[1])[0]["AP"] == pytest.approx(100.0)
    assert coco_bbox_metrics(GT, dets)[0]["AP"] < 100.0


# --- class mapping and evaluate() end to end -----------------------------------------------------
@pytest.fixture
def tiny_dataset(tmp_path):
    """Two 100x200 images (not the model's input size: the letterbox is exercised)."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for im in GT["images"]:
        cv2.imwrite(str(img_dir / im["file_name"]), np.full((100, 200, 3), 40, np.uint8))
    ann = tmp_path / "instances_val.json"
    ann.write_text(json.dumps(GT))
    return ann, img_dir


class OracleBackend(Backend):
    """Returns the ground truth of the images, in the order evaluate() reads them, in input pixels."""

    name = "oracle"

    def __init__(self, class_names, gt_by_image, frame_hw, input_size=(64, 64)):
        super().__init__(ModelMeta("oracle", class_names, input_size, topk=8))
        self.queue = list(gt_by_image)
        self.info = letterbox_geometry(frame_hw, input_size)

    def _open(self):
        pass

    def _close(self):
        pass

    def _infer(self, images):
        n, k = images.shape[0], self.meta.topk
        boxes = np.zeros((n, k, 4), np.float32)
        scores = np.zeros((n, k), np.float32)
        cls = np.zeros((n, k), np.int32)
        for i in range(n):
            objs = self.queue.pop(0)
            for j, (c, xyxy) in enumerate(objs):
                boxes[i, j] = self.info.to_input(np.asarray([xyxy], np.float32))[0]
                scores[i, j] = 0.9 - 0.1 * j
                cls[i, j] = c
        return {"boxes": boxes, "scores": scores, "class_ids": cls}


def _oracle(model_classes):
    ds_names = {c["id"]: c["name"] for c in CATS}
    per_image = []
    for im in GT["images"]:
        objs = []
        for a in GT["annotations"]:
            if a["image_id"] == im["id"]:
                x, y, w, h = a["bbox"]
                objs.append((model_classes.index(ds_names[a["category_id"]]), [x, y, x + w, y + h]))
        per_image.append(objs)
    return OracleBackend(model_classes, per_image, (100, 200))


@pytest.mark.parametrize("model_classes", [["cat", "dog"], ["dog", "cat"]])
def test_evaluate_oracle_through_pipeline(tiny_dataset, tmp_path, model_classes):
    """Exact ground truth through letterbox -> NMS -> un-letterbox -> id mapping gives AP 100,
    whatever the model's class order (classes are matched by name, ids are 3 and 11)."""
    ann, img_dir = tiny_dataset
    out = tmp_path / "results.json"
    res = evaluate(_oracle(model_classes), ann, img_dir, EvalOptions(progress=False, results_json=out))
    assert res.metrics["AP"] == pytest.approx(100.0, abs=0.5)
    assert res.metrics["AR100"] == pytest.approx(100.0, abs=0.5)
    assert res.num_images == 2 and res.num_detections == 4
    records = json.loads(out.read_text())
    assert {r["category_id"] for r in records} == {3, 11}
    assert "AP @[IoU=0.50:0.95 | area=all | maxDets=100]" in res.table()
    assert "dog" in res.table(per_class=True)
    with pytest.raises(OutputExistsError):
        evaluate(_oracle(model_classes), ann, img_dir, EvalOptions(progress=False, results_json=out))


def test_class_name_mismatch_is_an_error(tiny_dataset):
    ds = CocoDataset(*tiny_dataset)
    assert class_to_category_ids(["dog", "cat"], ds).tolist() == [11, 3]
    with pytest.raises(IncompatibleError, match="only in the model: bird; only in the dataset: dog"):
        class_to_category_ids(["cat", "bird"], ds)
    backend = OracleBackend(["cat", "horse"], [], (100, 200))
    with pytest.raises(IncompatibleError, match="matched by name"):
        evaluate(backend, *tiny_dataset, EvalOptions(progress=False))


def test_cli_eval_with_data_dir(tmp_path, capsys):
    """`detnet-trt eval` on a synthetic dataset with the tiny ONNX model (random weights: the
    metrics are only checked for being well-formed; the class names differ, so map by name)."""
    pytest.importorskip("onnxruntime")
    from detnet_trt.data.synth import make_synth_dataset

    data = make_synth_dataset(tmp_path / "d", images=3, size=(64, 64), progress=False)
    rc = main(["eval", "--model", str(tmp_path / "nope.onnx"), "--data", str(data)])
    assert rc == 2 and "no such file" in capsys.readouterr().err


def _dataset_for(class_names, root, tmp_path):
    """The synthetic val split relabelled with ``class_names`` (ids 11, 21, 31, ...: non-contiguous)."""
    data = json.loads((root / "annotations/instances_val.json").read_text())
    ids = [10 * (i + 1) + 1 for i in range(len(class_names))]
    old = sorted({c["id"] for c in data["categories"]})
    data["categories"] = [{"id": cid, "name": n} for cid, n in zip(ids, class_names)]
    for a in data["annotations"]:
        a["category_id"] = ids[old.index(a["category_id"]) % len(ids)]
    ann = tmp_path / "instances_relabelled.json"
    ann.write_text(json.dumps(data))
    return ann, root / "images/val", set(ids)


def test_evaluate_tiny_onnx(tiny_onnx, tmp_path, capsys):
    """The real exported model through ONNX Runtime: well-formed metrics and results JSON, in the
    dataset's (non-contiguous) ids, with batching; then the same through the CLI."""
    from detnet_trt.data.synth import make_synth_dataset
    from detnet_trt.runtime.backends import load_backend

    names = load_backend(tiny_onnx).meta.class_names
    root = make_synth_dataset(tmp_path / "d", images=6, size=(96, 128), val_fraction=0.5, progress=False)
    ann, img_dir, ids = _dataset_for(names, root, tmp_path)
    res = evaluate(tiny_onnx, ann, img_dir, EvalOptions(batch=2, progress=False, results_json=tmp_path / "r.json"))
    assert res.num_images == 3 and res.num_detections > 0
    assert set(res.metrics) == set(METRIC_KEYS)
    assert all(-1 <= v <= 100 for v in res.metrics.values())
    records = json.loads((tmp_path / "r.json").read_text())
    assert len(records) == res.num_detections and {r["category_id"] for r in records} <= ids
    assert all(r["bbox"][2] >= 0 and r["bbox"][0] >= 0 and r["bbox"][0] + r["bbox"][2] <= 128.01 for r in records)
    assert set(res.per_class) == set(names)

    summary = tmp_path / "summary.json"
    rc = main(["eval", "--model", str(tiny_onnx), "--ann", str(ann), "--images", str(img_dir), "--per-class",
               "--summary", str(summary), "--quiet", "--limit", "2"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "maxDets=100" in out and names[0] in out
    assert json.loads(summary.read_text())["num_images"] == 2


def test_eval_options_name_the_flag_and_eval_thresholds_are_the_default() -> None:
    import inspect

    from detnet_trt.core.config import PostprocessConfig

    with pytest.raises(InputError, match="--batch"):
        EvalOptions(batch=0)
    assert inspect.signature(evaluate).parameters["post"].default == PostprocessConfig.for_eval()
