"""COCO AP of the demo model against the NMS score threshold: what keeping ``EfficientNMS_TRT`` on
its fast path (score threshold >= 0.007, see docs/export.md) costs in accuracy.

Accuracy, not speed (the plugin's speed needs a GPU). The plugin does class-aware NMS over the
top-K candidates; on CPU the same NMS is the package's host post-processing, so the shipped
checkpoint's FP32 ONNX is evaluated (``detnet_trt.evaluation.coco_eval.evaluate``, IoU 0.6, 100
detections, ONNX Runtime) with each score threshold, on the val split of synthetic datasets made
by ``detnet-trt synth``::

    .venv/bin/python benchmarks/efficient_nms_threshold.py

Work files go to ``--work`` (default ``benchmarks/cpu/work/efficient_nms_threshold``, git-ignored).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _accuracy import ROOT, add_common_args, datasets_record, synth_datasets, work_dir
from _timing import machine, write_results

from detnet_trt.core.config import EVAL_IOU, PostprocessConfig
from detnet_trt.evaluation.coco_eval import EvalOptions, evaluate
from detnet_trt.export.onnx import export_onnx

SYNTH = (("demo seed 2026", 100, 2026, 0.4), ("seed 777", 250, 777, 0.4))
THRESHOLDS = (0.001, 0.005, 0.01, 0.02, 0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "efficient_nms_threshold", calib=False)
    args = ap.parse_args()
    work = work_dir(args.work)
    datasets = synth_datasets(work, SYNTH)
    t0 = time.perf_counter()
    fp32 = export_onnx(args.checkpoint, work / "fp32.onnx", force=True)
    rows = []
    for conf in THRESHOLDS:
        row: dict = {"conf": conf}
        for dname, (ann, images) in datasets.items():
            post = PostprocessConfig(conf=conf, iou=EVAL_IOU, max_det=100)
            res = evaluate(fp32, ann, images, EvalOptions(progress=False), post)
            row[dname] = round(float(res.metrics["AP"]), 2)
            row[f"{dname} detections"] = res.num_detections
        rows.append(row)
        print(row, flush=True)
    doc = {"benchmark": "efficient_nms_threshold", "checkpoint": str(Path(args.checkpoint).relative_to(ROOT)),
           "datasets": datasets_record(datasets),
           "iou": EVAL_IOU, "max_det": 100, "seconds": round(time.perf_counter() - t0, 1), "machine": machine(),
           "results": rows}
    write_results(args.out, "efficient_nms_threshold", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    names = list(doc["datasets"])
    base = doc["results"][0]
    lines = [
        "# COCO AP against the NMS score threshold (EfficientNMS fast path, ONNX Runtime CPU)",
        "",
        f"Command: `{doc['machine']['command']}`  ",
        f"Checkpoint `{doc['checkpoint']}`, FP32 ONNX; class-aware NMS IoU {doc['iou']}, {doc['max_det']} detections "
        "per image; AP (0-100, pycocotools) on the val split of each synthetic dataset ("
        + ", ".join(f"{k}: {v['images']} images" for k, v in doc["datasets"].items())
        + "); in brackets the difference to conf 0.001, then the detections kept in all. "
        "EfficientNMS_TRT takes its fast path (filter, then sort the kept scores) from a threshold of 0.007; "
        "below, it copies and sorts every one of the N x K x C scores.  ",
        f"Date: {doc['machine']['date']}; {doc['machine']['cpu_model']}, {doc['machine']['cpus']} CPUs "
        "(the shared development machine, no GPU; accuracy does not depend on load).",
        "",
        "| score threshold | plugin path | " + " | ".join(names) + " |",
        "| --- | --- |" + " --- |" * len(names),
    ]
    for r in doc["results"]:
        cells = [f"{r[n]:.2f}" + ("" if r is base else f" ({r[n] - base[n]:+.2f})") + f", {r[n + ' detections']} dets"
                 for n in names]
        path = "fast (filter)" if r["conf"] >= 0.007 else "slow (dense sort)"
        lines.append(f"| {r['conf']} | {path} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
