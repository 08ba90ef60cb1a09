"""Where the two-stage DetNet-59 FPN spends its time: ONNX Runtime CPU latency per stage.

Usage::

    .venv/bin/python benchmarks/fpn_stage_latency.py [--size 512x512] [--runs 5] [--threads 2] [--out benchmarks/results]

The detector (random weights, 80 classes, 300 proposals; the cost does not depend on the weights)
is exported as four ONNX graphs with the same exporter as ``detnet-trt export``: the whole
detector, and its three stages, each the model's own method:

- ``backbone_fpn``: uint8 images -> P2 ... P6 (``DetNetFPNDetector.features``);
- ``rpn_proposals``: P2 ... P6 -> 300 RoIs (RPN head, anchors, decoding, TopK 6000, NMS 0.7);
- ``roi_head``: P2 ... P5 + RoIs -> detections (pyramid RoIAlign, the box head, decoding,
  per-class NMS 0.3, top 100).

Each graph runs in its own ONNX Runtime CPU session (``--threads`` intra-op threads) on the
outputs of the previous stage for one random image; one warm-up run, then ``--runs`` timed runs
(median and min reported), then one run under ONNX Runtime's profiler gives the time per op type.
A shared 2-core machine: the figures are indicative.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, write_results

from detnet_trt.core.offline import import_ort
from detnet_trt.models import DetNetFPNConfig, DetNetFPNDetector


class _Features(nn.Module):
    def __init__(self, m: DetNetFPNDetector) -> None:
        super().__init__()
        self.m = m

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.m.features(images))


class _Proposals(nn.Module):
    def __init__(self, m: DetNetFPNDetector) -> None:
        super().__init__()
        self.m = m

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        h, w = self.m.input_size
        return self.m.proposals(list(feats), h, w)


class _RoIHead(nn.Module):
    def __init__(self, m: DetNetFPNDetector) -> None:
        super().__init__()
        self.m = m

    def forward(self, p2: torch.Tensor, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, w = self.m.input_size
        probs, boxes = self.m.roi_outputs([p2, p3, p4, p5], rois, h, w)
        return self.m.detections(probs, boxes, h, w)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=17, do_constant_folding=True, input_names=names)
    return buf.getvalue()


def _time(sess, feed: dict[str, np.ndarray], runs: int) -> tuple[list[np.ndarray], list[float]]:
    out = sess.run(None, feed)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return out, times


def _op_profile(data: bytes, feed: dict[str, np.ndarray], threads: int, folder: Path) -> dict[str, float]:
    """ms per op type in one profiled run (ONNX Runtime's profiler), largest first."""
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(folder / "ort_profile")
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e.get("dur", 0) / 1e3
    return {k: round(v, 1) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="512x512", help="HxW, multiples of 16")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.manual_seed(0)
    model = DetNetFPNDetector(DetNetFPNConfig(num_classes=80, input_size=(h, w))).eval()
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, h, w), dtype=np.uint8))
    with torch.no_grad():
        feats = model.features(images)
        rois = model.proposals(feats, h, w)
    graphs = {
        "backbone_fpn": (_export(_Features(model), (images,), ["images"]), {"images": images.numpy()}),
        "rpn_proposals": (_export(_Proposals(model), tuple(feats), [f"p{i}" for i in range(2, 7)]),
                          {f"p{i}": f.numpy() for i, f in zip(range(2, 7), feats)}),
        "roi_head": (_export(_RoIHead(model), (*feats[:4], rois), ["p2", "p3", "p4", "p5", "rois"]),
                     {**{f"p{i}": f.numpy() for i, f in zip(range(2, 6), feats)}, "rois": rois.numpy()}),
        "whole_detector": (_export(model, (images,), ["images"]), {"images": images.numpy()}),
    }
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    rows = []
    for name, (data, feed) in graphs.items():
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        _, times = _time(sess, feed, args.runs)
        with tempfile.TemporaryDirectory() as tmp:
            ops = _op_profile(data, feed, args.threads, Path(tmp))
        rows.append({"stage": name, "ms_median": round(statistics.median(times), 1), "ms_min": round(min(times), 1),
                     "runs_ms": [round(t, 1) for t in times], "profiled_run_ms_by_op": ops})
        print(rows[-1], flush=True)
    doc = {"machine": machine(), "input": [h, w], "threads": args.threads, "proposals": model.config.topk,
           "onnxruntime": ort.__version__, "torch": torch.__version__, "results": rows}
    total = sum(r["ms_median"] for r in rows[:3])
    md = [
        f"# Two-stage DetNet-59 FPN: ONNX Runtime CPU latency per stage ({h}x{w}, batch 1)",
        "",
        f"`{doc['machine']['command']}`; {doc['machine']['cpu_model']}, {doc['machine']['cpus']} CPUs shared with "
        f"other jobs (load {doc['machine']['loadavg']}), ONNX Runtime {ort.__version__}, {args.threads} intra-op "
        f"threads, {doc['machine']['date']}. 80 classes, 300 proposals, random weights. Indicative only.",
        "",
        "| stage | median ms | min ms | share of the three stages |",
        "|---|---|---|---|",
    ]
    for r in rows:
        share = f"{100 * r['ms_median'] / total:.0f} %" if r["stage"] != "whole_detector" else "-"
        md.append(f"| {r['stage']} | {r['ms_median']} | {r['ms_min']} | {share} |")
    md += ["", "Op types taking most of each stage (one profiled run, ONNX Runtime's profiler, ms):", ""]
    for r in rows[:3]:
        top = list(r["profiled_run_ms_by_op"].items())[:5]
        md.append(f"- {r['stage']}: " + ", ".join(f"{op} {ms}" for op, ms in top))
    write_results(args.out, "fpn_stage_latency", doc, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
