"""COCO AP against the export's per-image top-K: how many candidates NMS needs (the --topk default).

Runs a checkpoint through the PyTorch backend with ``model.topk`` set to each K and scores it
with detnet_trt.evaluation.coco_eval (pycocotools; conf 0.001, IoU 0.6, 100 detections, as COCO expects).
The exported graph computes exactly this top-K, so the AP here is the AP an export with
``--topk K`` would give.

    .venv/bin/python benchmarks/topk_ap.py --checkpoint detnet_trt/assets/detnet_tiny_synth.pt \\
        --data data/synth --ks 100,300,1000,3000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _timing import machine

from detnet_trt.core.fileio import sha256_file
from detnet_trt.data.coco import resolve_coco_dir
from detnet_trt.evaluation.coco_eval import EvalOptions, evaluate
from detnet_trt.models.checkpoint import load_checkpoint
from detnet_trt.runtime.backends.torch_backend import TorchBackend

KEYS = ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="COCO-layout folder (e.g. made by `detnet-trt synth`)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--ks", default="100,300,1000,3000")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    ann, images = resolve_coco_dir(args.data, args.split)
    rows = []
    model, _ = load_checkpoint(args.checkpoint)  # top-K only sets the forward's final torch.topk
    for k in (int(x) for x in args.ks.split(",")):
        model.topk = k
        t0 = time.perf_counter()
        res = evaluate(TorchBackend(model), ann, images, EvalOptions(batch=8, progress=False))
        rows.append({"topk": k, **{key: round(float(res.metrics[key]), 2) for key in KEYS},
                     "eval_s": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    doc = {
        "benchmark": "topk_ap",
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": sha256_file(args.checkpoint),
        "model": model.name,
        "input_size": list(model.input_size),
        "classes": len(model.class_names),
        "data": str(args.data),
        "split": args.split,
        "machine": machine(),
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "topk_ap.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [
        "# COCO AP against the per-image top-K (the export's --topk)",
        "",
        f"Command: `{doc['machine']['command']}`  ",
        f"Checkpoint: `{doc['checkpoint']}` (sha256 {doc['checkpoint_sha256'][:16]}..., {doc['model']}, "
        f"{doc['input_size'][0]}x{doc['input_size'][1]}, {doc['classes']} classes); data `{args.data}` split "
        f"{args.split}; conf 0.001, IoU 0.6, max 100 detections; metrics in percent.  ",
        f"Date: {doc['machine']['date']}.",
        "",
        "| top-K | " + " | ".join(KEYS) + " |",
        "| --- |" + " --- |" * len(KEYS),
    ]
    lines += [f"| {r['topk']} | " + " | ".join(f"{r[k]:.2f}" for k in KEYS) + " |" for r in rows]
    (out / "topk_ap.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'topk_ap.json'} and {out / 'topk_ap.md'}")


if __name__ == "__main__":
    main()
