"""``detnet-trt eval``: COCO bbox metrics of a model on a COCO-format dataset."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.config import PostprocessConfig
from ..core.limits import BATCH, COUNT
from ._options import add_backend_args, add_postprocess_args, backend_kwargs, number, postprocess_config, skip_printer

if TYPE_CHECKING:
    from ..evaluation.coco_eval import EvalOptions


def add_eval_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.evaluation.coco_eval.EvalOptions`."""
    p.add_argument("--batch", type=number(BATCH), default=1, help="images per inference (default 1)")
    p.add_argument("--limit", type=number(COUNT), default=None, help="evaluate the first N images only")
    p.add_argument("--json", dest="results_json", help="write the COCO results JSON here")
    p.add_argument("--force", action="store_true", help="overwrite --json / --summary files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def eval_options(args: argparse.Namespace) -> EvalOptions:
    from ..evaluation.coco_eval import EvalOptions

    return EvalOptions(batch=args.batch, max_images=args.limit, results_json=args.results_json, force=args.force,
                       progress=not args.quiet)


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
    p.add_argument("--summary", help="write the metrics (and per-class AP) as JSON here")
    p.add_argument("--per-class", action="store_true", help="print per-class AP")
    add_postprocess_args(p, PostprocessConfig.for_eval())
    add_eval_args(p)
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from ..core.fileio import atomic_write_text, check_writable
    from ..data.coco import resolve_dataset
    from ..evaluation.coco_eval import evaluate

    options, post = eval_options(args), postprocess_config(args, PostprocessConfig.for_eval())
    ann, images = resolve_dataset(args.data, args.split, args.ann, args.images)
    if args.summary:
        check_writable(args.summary, args.force, inputs=(args.model, ann))
    skipped = skip_printer("eval")
    res = evaluate(args.model, ann, images, options, post, backend_kwargs=backend_kwargs(args, args.model),
                   skipped=skipped)
    print(f"{args.model} on {ann} ({res.num_images} images, {res.num_detections} detections, {res.seconds:.1f} s); "
          "metrics in %, -1 = undefined")
    print(res.table(per_class=args.per_class))
    if res.results_json:
        print(f"results JSON: {res.results_json}")
    if args.summary:
        atomic_write_text(args.summary, json.dumps(res.to_dict(), indent=2), force=args.force)
        print(f"summary: {args.summary}")
    return skipped.exit_code()
