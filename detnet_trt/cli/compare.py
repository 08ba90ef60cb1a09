"""``detnet-trt compare A B``: output errors, matched detections and (with --data) ΔAP of two models."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.limits import BATCH, COUNT, IOU, SEED
from ._options import add_backend_args, add_postprocess_args, backend_kwargs, number, postprocess_config, skip_printer

if TYPE_CHECKING:
    from ..apps.compare import CompareOptions


def add_compare_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.apps.compare.CompareOptions`."""
    p.add_argument("--data", help="COCO-layout dataset folder: adds AP of each and ΔAP")
    p.add_argument("--split", default="val", help="split under --data (default val)")
    p.add_argument("--ann", help="annotation file (instead of --data)")
    p.add_argument("--images", help="image folder (with --ann)")
    p.add_argument("--image-dir", help="plain image folder to compare on (no AP)")
    p.add_argument("--num", type=number(COUNT), default=None, help="number of images (default: all of --data, 32 of "
                   "--image-dir, 16 synthetic)")
    p.add_argument("--batch", type=number(BATCH), default=1, help="images per inference (default 1)")
    p.add_argument("--match-iou", type=number(IOU), default=0.5, help="IoU for a detection to count as matched (default 0.5)")
    p.add_argument("--seed", type=number(SEED), default=0, help="seed of the synthetic scenes (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def compare_options(args: argparse.Namespace) -> CompareOptions:
    """The :class:`CompareOptions` of the flags (``--data``/``--ann``/``--images`` resolved to files)."""
    from ..apps.compare import CompareOptions
    from ..data.coco import resolve_dataset

    data = None
    if args.data or args.ann or args.images:
        data = resolve_dataset(args.data, args.split, args.ann, args.images)
    return CompareOptions(data=data, images=args.image_dir, num_images=args.num, seed=args.seed, batch=args.batch,
                          match_iou=args.match_iou, progress=not args.quiet)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="compare two models (e.g. FP32 ONNX vs INT8 / engine) on the same images",
        description="Runs A (reference) and B on the same frames: per-output max/mean absolute and relative error, "
        "the fraction of detections matched at IoU 0.5 with the same class, and with --data the COCO AP of each "
        "and the difference. Without --data or --image-dir, synthetic scenes are used.",
    )
    p.add_argument("a", help="reference model (.pt, .onnx, .engine)")
    p.add_argument("b", help="model to check against A")
    add_compare_args(p)
    add_postprocess_args(p, max_det=False)
    p.add_argument("--json", dest="json_out", help="write the comparison as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite --json")
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from ..apps.compare import compare
    from ..core.fileio import atomic_write_text, check_writable

    options = compare_options(args)
    if args.json_out:
        check_writable(args.json_out, args.force, inputs=(args.a, args.b))
    skipped = skip_printer("compare")
    res = compare(args.a, args.b, options, postprocess_config(args),
                  backend_kwargs_a=backend_kwargs(args, args.a), backend_kwargs_b=backend_kwargs(args, args.b),
                  skipped=skipped)
    print(res.table())
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(res.to_dict(), indent=2), force=args.force)
        print(f"comparison: {args.json_out}")
    return skipped.exit_code()
