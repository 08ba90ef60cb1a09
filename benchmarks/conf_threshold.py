"""Precision / recall / F1 of the final detections against the score threshold (``--conf``).

Accuracy, not speed: it chose ``detnet_trt.core.config.DEFAULT_CONF``. Runs a model through the
deployment path (:class:`detnet_trt.runtime.detector.Detector`: letterbox -> infer -> class-aware NMS at
IoU 0.5) once at a low threshold, then counts, for each threshold, the detections that match a
ground-truth box of the same class at IoU >= 0.5 (greedy by score, one-to-one:
:func:`detnet_trt.runtime.matching.match_detections`). The model's classes map to the dataset's by name.

    .venv/bin/python benchmarks/conf_threshold.py --model demo_out/detnet_tiny_fp32.onnx --data demo_out/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _timing import machine, write_results

from detnet_trt.core.config import DEFAULT_CONF, PostprocessConfig
from detnet_trt.core.errors import InputError
from detnet_trt.data.coco import CocoDataset
from detnet_trt.runtime.backends import load_backend
from detnet_trt.runtime.detector import Detector
from detnet_trt.runtime.matching import match_detections
from detnet_trt.runtime.postprocess import Detections

THRESHOLDS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help=".pt, .onnx or .engine")
    ap.add_argument("--data", required=True, help="COCO-layout folder (e.g. the demo's demo_out/data)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--match-iou", type=float, default=0.5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()

    ds = CocoDataset.from_dir(args.data, args.split)
    t0 = time.perf_counter()
    pairs: list[tuple[Detections, Detections]] = []  # (ground truth, detections) per image
    with load_backend(args.model) as backend:
        det = Detector(backend, PostprocessConfig(conf=min(THRESHOLDS), iou=0.5))
        missing = sorted(set(ds.class_names) - set(det.class_names))
        if missing:
            raise InputError(f"dataset classes {missing} are not among the model's {list(det.class_names)}")
        to_model = np.asarray([list(det.class_names).index(n) for n in ds.class_names], np.int32)
        for img in ds:
            gt = Detections(img.boxes.astype(np.float32), np.ones(len(img.boxes), np.float32), to_model[img.labels])
            pairs.append((gt, det([img.load()])[0]))
    rows = []
    n_gt = sum(len(gt) for gt, _ in pairs)
    for t in THRESHOLDS:
        tp = kept = 0
        for gt, d in pairs:
            keep = d.scores >= t
            sel = Detections(d.boxes[keep], d.scores[keep], d.class_ids[keep])
            kept += len(sel)
            tp += len(match_detections(gt, sel, args.match_iou))
        p, r = tp / max(1, kept), tp / max(1, n_gt)
        rows.append({"conf": t, "detections": kept, "true_positives": tp, "precision": round(p, 3),
                     "recall": round(r, 3), "f1": round(2 * p * r / max(1e-9, p + r), 3)})
        print(rows[-1], flush=True)
    doc = {"benchmark": "conf_threshold", "model": str(args.model), "data": str(args.data), "split": args.split,
           "images": len(pairs), "ground_truth": n_gt, "match_iou": args.match_iou, "default_conf": DEFAULT_CONF,
           "seconds": round(time.perf_counter() - t0, 1), "machine": machine(), "results": rows}
    write_results(args.out, "conf_threshold", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    best = max(doc["results"], key=lambda r: r["f1"])
    lines = [
        "# Precision / recall of the final detections against the score threshold",
        "",
        f"Command: `{doc['machine']['command']}`  ",
        f"Model `{doc['model']}`; data `{doc['data']}` split {doc['split']}: {doc['images']} images, "
        f"{doc['ground_truth']} ground-truth boxes; a detection is right when it matches an unmatched box of "
        f"the same class at IoU >= {doc['match_iou']}. NMS IoU 0.5, 100 detections per image.  ",
        f"Date: {doc['machine']['date']}; {doc['machine']['cpu_model']}.",
        "",
        "| conf | detections | right | precision | recall | F1 |",
        "| --- | --- | --- | --- | --- | --- |",
        *[f"| {r['conf']:.2f} | {r['detections']} | {r['true_positives']} | {r['precision']:.3f} | "
          f"{r['recall']:.3f} | {r['f1']:.3f} |" for r in doc["results"]],
        "",
        f"Best F1 at conf {best['conf']:.2f}; the package default (`DEFAULT_CONF`) is {doc['default_conf']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
