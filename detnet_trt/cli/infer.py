"""``detnet-trt infer --model PATH IMAGES_OR_DIR... --out DIR``: annotated images + detections JSON."""

from __future__ import annotations

import argparse

from ..core.config import DEFAULT_CONF
from ._options import add_backend_args, backend_kwargs


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "infer",
        help="detect objects in images with any model file (.pt, .onnx, .engine)",
        description="Run a checkpoint (.pt), an exported ONNX file or a TensorRT engine on image files and "
        "folders; writes one annotated image per input and DIR/detections.json. Unreadable images are "
        "reported by name and skipped; the exit code is then 2.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--model", required=True, help="model file: .pt checkpoint, .onnx, or .engine")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--conf", type=float, default=DEFAULT_CONF, help="score threshold (default %(default)s)")
    p.add_argument("--iou", type=float, default=0.5, help="NMS IoU threshold (default 0.5)")
    p.add_argument("--max-det", type=int, default=100, help="detections per image at most (default 100)")
    p.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..apps.infer import run_inference

    def report(path: Path, reason: str) -> None:
        print(f"detnet-trt infer: error: {reason}; skipped", file=sys.stderr, flush=True)

    result = run_inference(
        args.model,
        args.inputs,
        args.out,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        batch=args.batch,
        force=args.force,
        backend_kwargs=backend_kwargs(args, args.model),
        on_error=report,
        progress=not args.quiet,
    )
    n = sum(len(d) for d in result.detections.values())
    print(f"{len(result.outputs)} image(s), {n} detection(s) -> {result.out_dir}/ (annotated images, {result.json_path.name})")
    if result.failed:
        print(f"detnet-trt infer: error: {len(result.failed)} image(s) could not be read: "
              + ", ".join(Path(f).name for f, _ in result.failed), file=sys.stderr)
        return 2
    return 0
