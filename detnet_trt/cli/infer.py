"""``detnet-trt infer --model PATH IMAGES_OR_DIR... --out DIR``: annotated images + detections JSON."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.limits import BATCH
from ._options import add_backend_args, add_postprocess_args, backend_kwargs, number, postprocess_config, skip_printer

if TYPE_CHECKING:
    from ..apps.infer import InferOptions


def add_infer_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.apps.infer.InferOptions`."""
    p.add_argument("--batch", type=number(BATCH), default=1, help="images per inference call (default 1)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def infer_options(args: argparse.Namespace) -> InferOptions:
    from ..apps.infer import InferOptions

    return InferOptions(batch=args.batch, force=args.force, progress=not args.quiet)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "infer",
        help="detect objects in images with any model file (.pt, .onnx, .engine)",
        description="Run a checkpoint (.pt), an exported ONNX file or a TensorRT engine on image files and "
        "folders; writes one annotated image per input and DIR/detections.json. Unreadable images are "
        "named, skipped and counted; the exit code is then 1 (2 when none could be read).",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--model", required=True, help="model file: .pt checkpoint, .onnx, or .engine")
    p.add_argument("--out", required=True, help="output folder")
    add_postprocess_args(p)
    add_infer_args(p)
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..apps.infer import run_inference

    skipped = skip_printer("infer")
    result = run_inference(args.model, args.inputs, args.out, infer_options(args), postprocess_config(args),
                           backend_kwargs=backend_kwargs(args, args.model), on_error=lambda p, why: skipped.add(p, why))
    n = sum(len(d) for d in result.detections.values())
    print(f"{len(result.outputs)} image(s), {n} detection(s) -> {result.out_dir}/ (annotated images, {result.json_path.name})")
    code = skipped.exit_code()
    return 2 if code and not result.outputs else code  # none readable: nothing was done
