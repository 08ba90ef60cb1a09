"""Class-aware NMS on 1,000 candidates: detnet_trt's batched_nms against cv2.dnn.NMSBoxesBatched.

Goal (issue 4): not slower than OpenCV's NMSBoxesBatched. Candidates are what the graph's
per-image top-K hands the host at evaluation settings (conf 0.001, so all 1,000 reach NMS):

- ``clustered``: 1,000 boxes jittered around 40 objects, 80 classes (70 % of a cluster's boxes
  share its class): most boxes are suppressed, as on a real image;
- ``sparse``: 1,000 boxes around 400 objects: many survive, the worst case for greedy NMS;
- ``one-class``: clustered, all one class.

Timed, per call, on the same arrays (xyxy float32 boxes, float32 scores, int32 class ids):
``batched_nms`` (what ``postprocess`` uses: OpenCV's C++ NMS behind a thin adapter), the pure
NumPy fallback ``_batched_nms_numpy``, ``cv2.dnn.NMSBoxesBatched`` alone on boxes already in its
xywh format, and the same including the xyxy -> xywh conversion a caller has to do; plus the whole
``postprocess_image`` (threshold + NMS + max_det + undo letterbox). Kept index sets are compared.

    taskset -c 0 .venv/bin/python benchmarks/bench_nms.py      # one core; ~1 min
"""

from __future__ import annotations

import argparse
import importlib

import cv2
import numpy as np
from _timing import add_timing_args, machine, machine_lines, time_interleaved, write_results

from detnet_trt.runtime.letterbox import letterbox_geometry

pp = importlib.import_module("detnet_trt.runtime.postprocess")
ops = importlib.import_module("detnet_trt.runtime.nms")


def candidates(n: int, ncls: int, nobj: int, seed: int, img: float = 512.0):
    rng = np.random.default_rng(seed)
    ctr = rng.uniform(0, img, (nobj, 2))
    wh = rng.uniform(16, img / 3, (nobj, 2))
    own = rng.integers(0, ncls, nobj)
    j = rng.integers(0, nobj, n)
    c = ctr[j] + rng.normal(0, 1, (n, 2)) * wh[j] * 0.1
    s = wh[j] * np.exp(rng.normal(0, 0.15, (n, 2)))
    boxes = np.concatenate([c - s / 2, c + s / 2], 1).astype(np.float32)
    cls = np.where(rng.random(n) < 0.7, own[j], rng.integers(0, ncls, n)).astype(np.int32)
    scores = np.sort(rng.random(n).astype(np.float32))[::-1].copy()  # top-K arrives sorted
    return boxes, scores, cls


SCENARIOS = {
    "clustered": {"ncls": 80, "nobj": 40},
    "sparse": {"ncls": 80, "nobj": 400},
    "one-class": {"ncls": 1, "nobj": 40},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="candidates per image")
    ap.add_argument("--iou", type=float, default=0.5)
    add_timing_args(ap, calls=100)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    info = letterbox_geometry((720, 1280), (512, 512))
    results = []
    for name, kw in SCENARIOS.items():
        boxes, scores, cls = candidates(args.n, seed=0, **kw)
        xywh = boxes.copy()
        xywh[:, 2:] -= boxes[:, :2]

        def ocv_bare() -> np.ndarray:
            return np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, cls, 0.0, args.iou)).reshape(-1)

        def ocv_convert() -> np.ndarray:
            b = boxes.copy()
            b[:, 2:] -= b[:, :2]
            return np.asarray(cv2.dnn.NMSBoxesBatched(b, scores, cls, 0.0, args.iou)).reshape(-1)

        impls = {
            "detnet_trt batched_nms": lambda: ops.batched_nms(boxes, scores, cls, args.iou),
            "detnet_trt NumPy fallback": lambda: ops._batched_nms_numpy(boxes, scores, cls, args.iou),
            "cv2.dnn.NMSBoxesBatched (xywh given)": ocv_bare,
            "cv2.dnn.NMSBoxesBatched + xyxy->xywh": ocv_convert,
            "postprocess_image (conf 0.001, max_det 100)": lambda: pp.postprocess_image(
                boxes, scores, cls, info, conf=0.001, iou=args.iou, max_det=100
            ),
        }
        ref = set(ocv_bare().tolist())
        times = time_interleaved(impls, args.calls, args.rounds)
        for impl, fn in impls.items():
            kept = fn()
            kept_n = len(kept)
            same = None if isinstance(kept, pp.Detections) else set(np.asarray(kept).tolist()) == ref
            t = times[impl]
            results.append({"scenario": name, "impl": impl, "candidates": args.n, "kept": kept_n,
                            "same_as_opencv": same, **t})
            print(f"{name:10s} {impl:45s} kept {kept_n:4d} same={same!s:5s} {t['median_ms']:.3f} ms "
                  f"(min {t['min_ms']:.3f}, max {t['max_ms']:.3f})", flush=True)
    doc = {"benchmark": "nms", "machine": machine(), "iou": args.iou, "results": results}
    write_results(args.out, "nms", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# NMS on 1,000 candidates (class-aware, IoU 0.5)",
        "",
        *machine_lines(m),
        "",
        "Per-call time: median of the round means (rounds of back-to-back calls, the implementations "
        "measured round-robin), with the fastest and slowest round. `same` = the same kept set as OpenCV.",
        "",
        "| scenario | implementation | kept | same | median ms | min ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        same = "" if r["same_as_opencv"] is None else ("yes" if r["same_as_opencv"] else "NO")
        lines.append(f"| {r['scenario']} | {r['impl']} | {r['kept']} | {same} | {r['median_ms']:.3f} | "
                     f"{r['min_ms']:.3f} | {r['max_ms']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
