"""Record how the shipped demo model was made: commands, per-epoch losses and val AP, machine.

Usage (after the training run; the ``.last.pt`` holds the full history)::

    python benchmarks/record_demo_model.py --last detnet_tiny_synth.last.pt \\
        --model detnet_trt/assets/detnet_tiny_synth.pt --wall-seconds 1234 \\
        --command "detnet-trt synth ..." --command "detnet-trt train ..."

Writes ``benchmarks/results/demo_model_train.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from detnet_trt.apps.bench import machine_info
from detnet_trt.core.fileio import atomic_write_text, sha256_file
from detnet_trt.models.checkpoint import read_checkpoint

RESULTS = Path(__file__).parent / "results"
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--last", required=True, help="the run's <stem>.last.pt (history)")
    ap.add_argument("--model", required=True, help="the shipped checkpoint (best by val AP)")
    ap.add_argument("--command", action="append", default=[], help="a command that made it (repeat, in order)")
    ap.add_argument("--wall-seconds", type=float, default=None, help="wall time of the training command")
    ap.add_argument("--data", default=None, help="also evaluate the model on this dataset's full val split")
    ap.add_argument("--out", default=str(RESULTS / "demo_model_train"), help="output stem")
    args = ap.parse_args()

    state = read_checkpoint(args.last)["extra"]["train_state"]
    shipped = read_checkpoint(args.model)
    best = shipped["extra"]["train"]
    history: list[dict[str, Any]] = state["history"]
    record = {
        "format": "detnet_trt.train_record/1",
        "model_file": Path(args.model).name,
        "model_bytes": Path(args.model).stat().st_size,
        "model_sha256": sha256_file(args.model),
        "model": shipped["model"],
        "input_size": shipped["input_size"],
        "class_names": shipped["class_names"],
        "commands": args.command,
        "config": state["config"],
        "best_epoch": best["epoch"],
        "val": best["val"],
        "val_note": "COCO metrics (pycocotools) on the synth val split, percent (0-100), "
        "conf 0.001, iou 0.6, max_det 100",
        "train_wall_seconds": args.wall_seconds,
        "history": history,
        "machine": machine_info(),
    }
    if args.data:
        from detnet_trt.data.coco import resolve_coco_dir
        from detnet_trt.evaluation.coco_eval import EvalOptions, evaluate

        ann, images = resolve_coco_dir(args.data, "val")
        res = evaluate(args.model, ann, images, EvalOptions(progress=False))
        record["val_full"] = {k: float(v) for k, v in res.metrics.items()}
        record["val_full_images"] = res.num_images
    stem = Path(args.out)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(record, indent=2) + "\n")

    lines = [
        "# Shipped demo model: detnet_tiny trained on synthetic shapes",
        "",
        f"`{record['model_file']}`: {record['model_bytes'] / 1e6:.2f} MB, sha256 `{record['model_sha256'][:16]}...`, "
        f"input {record['input_size'][0]}x{record['input_size'][1]}, classes {', '.join(record['class_names'])}.",
        "",
        "Made with:",
        "",
        *[f"    {c}" for c in args.command],
        "",
        f"Best epoch {best['epoch']}: val " + ", ".join(f"{k} {best['val'][k]:.1f}" for k in KEYS),
        f"({record['val_note']}; during training: {record['config'].get('val_images') or 'all'} val images).",
        "",
        *(
            [
                f"Full val split ({record['val_full_images']} images, `detnet-trt eval` settings): "
                + ", ".join(f"{k} {record['val_full'][k]:.1f}" for k in KEYS),
                "",
            ]
            if "val_full" in record
            else []
        ),
        "| epoch | train loss | cls | box | ctr | lr at end | val AP | val AP50 | train s | val s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    for h in history:
        v = h.get("val") or {}
        lines.append(
            f"| {h['epoch']} | {h.get('train_loss', float('nan')):.3f} | {h.get('train_loss_cls', float('nan')):.3f} | "
            f"{h.get('train_loss_box', float('nan')):.3f} | {h.get('train_loss_ctr', float('nan')):.3f} | "
            f"{h['lr']:.2e} | "
            f"{fmt(v.get('AP'))} | {fmt(v.get('AP50'))} | {h['train_seconds']:.0f} | {fmt(h.get('val_seconds'))} |"
        )
    m = record["machine"]
    lines += [
        "",
        f"Training wall time: {args.wall_seconds:.0f} s." if args.wall_seconds else "",
        f"Machine: {m['cpu']}, {m['cpu_cores_usable']} usable cores (shared with other jobs; load average "
        f"{m['load_average']} when recorded), python {m['versions']['python']}, torch {m['versions']['torch']}.",
    ]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
