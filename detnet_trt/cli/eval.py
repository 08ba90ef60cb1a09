"""``detnet-trt eval``: COCO bbox metrics of a model on a COCO-format dataset."""

from __future__ import annotations

import argparse

from ._options import add_backend_args, backend_kwargs


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="COCO bbox AP of a model (.pt, .onnx, .engine) on a COCO-format dataset",
        description="Runs the model through the deployment pre/post-processing with a low score threshold, "
        "writes the COCO results JSON (--json) and prints the 12 COCO bbox metrics (0-100) computed by "
        "pycocotools. Dataset: --data DIR in COCO layout (DIR/annotations/instances_<split>.json, images in "
        "DIR/<split>/ or DIR/images/<split>/), or --ann FILE --images DIR.",
    )
    p.add_argument("--model", "-m", required=True, help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)")
    p.add_argument("--data", help="COCO-layout dataset folder")
    p.add_argument("--split", default="val", help="split under --data (default val; val2017 for COCO 2017)")
    p.add_argument("--ann", help="annotation file (instead of --data)")
    p.add_argument("--images", help="image folder (with --ann)")
    p.add_argument("--json", dest="results_json", help="write the COCO results JSON here")
    p.add_argument("--summary", help="write the metrics (and per-class AP) as JSON here")
    p.add_argument("--per-class", action="store_true", help="print per-class AP")
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001, as COCO AP expects)")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (default 0.6)")
    p.add_argument("--max-det", type=int, default=100, help="detections per image (default 100)")
    p.add_argument("--batch", type=int, default=1, help="images per inference (default 1)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--force", action="store_true", help="overwrite --json / --summary files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from ..core.errors import InputError
    from ..core.fileio import atomic_write_text, check_writable
    from ..data.coco import resolve_dataset
    from ..evaluation.coco_eval import evaluate

    if args.batch < 1:
        raise InputError(f"--batch must be >= 1, got {args.batch}")
    ann, images = resolve_dataset(args.data, args.split, args.ann, args.images)
    if args.summary:
        check_writable(args.summary, args.force)
    res = evaluate(
        args.model,
        ann,
        images,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        batch=args.batch,
        progress=not args.quiet,
        results_json=args.results_json,
        force=args.force,
        max_images=args.limit,
        backend_kwargs=backend_kwargs(args, args.model),
    )
    print(f"{args.model} on {ann} ({res.num_images} images, {res.num_detections} detections, {res.seconds:.1f} s); "
          "metrics in %, -1 = undefined")
    print(res.table(per_class=args.per_class))
    if res.results_json:
        print(f"results JSON: {res.results_json}")
    if args.summary:
        atomic_write_text(args.summary, json.dumps(res.to_dict(), indent=2), force=args.force)
        print(f"summary: {args.summary}")
    return 0
