"""``detnet-trt demo``: the whole offline pipeline on the shipped model (what `make demo` runs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="run the main job on the shipped model: export, INT8, eval, detect, camera, bench, TensorRT",
        description="Export the shipped detnet_tiny model to ONNX, calibrate and quantize it to INT8, compare "
        "FP32 vs INT8 AP, annotate sample pictures and a generated video through the camera loop, benchmark, "
        "and try the TensorRT build. Offline, CPU, a few minutes. Everything goes under --out.",
    )
    p.add_argument("--out", "-o", default="demo_out", help="output folder (default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="model to use instead of the shipped one")
    p.add_argument("--force", action="store_true", help="overwrite the demo's files in an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..apps.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=Path(args.out), force=args.force, progress=not args.no_progress)
    if args.checkpoint:
        cfg.checkpoint = Path(args.checkpoint)
    summary = run_demo(cfg)
    print(f"demo finished in {summary['seconds']:.0f}s; everything is under {summary['out']}")
    for key in ("ap_table", "detections", "video_out", "latency_plot"):
        if key in summary["paths"]:
            print(f"  {key}: {summary['paths'][key]}")
    for note in summary["notes"]:
        print(f"  note: {note}")
    return 0
