"""``detnet-trt quantize``: FP32 ONNX + calibration set -> Q/DQ INT8 ONNX (ONNX Runtime quantizer).

The quantization flags are declared once, in :func:`add_quantize_args`, and make one
:class:`~detnet_trt.quantize.options.QuantizeOptions` in :func:`quantize_options`; the accuracy
flags likewise (:func:`add_accuracy_args` -> :class:`~detnet_trt.quantize.options.AccuracyCheckOptions`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.images import EXIT_SKIPPED_IMAGES
from ..core.limits import AP_DIFFERENCE, COUNT, PERCENTILE
from ..quantize.options import METHODS, AccuracyCheckOptions, QuantizeOptions
from ._options import number

_Q = QuantizeOptions  # the defaults of the quantization flags
_A = AccuracyCheckOptions  # the defaults of the accuracy flags


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "quantize",
        help="INT8 post-training quantization to a Q/DQ ONNX (TensorRT explicit quantization)",
        description="Calibrate the FP32 ONNX on a calibration set (through the runtime's letterbox) with ONNX "
        "Runtime and write a Q/DQ ONNX: per-channel symmetric INT8 weights, symmetric INT8 activations, Q/DQ on "
        "convolution inputs and fusable adds; the head's final layers and decode stay float. With --val-data, "
        f"FP32 and INT8 are evaluated and compared against a {_A.budget} AP budget.",
    )
    p.add_argument("model", help="FP32 ONNX written by detnet-trt export")
    p.add_argument("--calib", required=True, help="calibration set file (detnet-trt calib-set)")
    p.add_argument("--calib-images", help="folder the set's paths are relative to (default: the set's root)")
    p.add_argument("-o", "--output", required=True, help="Q/DQ ONNX to write, e.g. model.int8.onnx")
    add_quantize_args(p)
    add_accuracy_args(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def add_quantize_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`QuantizeOptions`, in a "quantization" group; :func:`quantize_options` reads them."""
    g = p.add_argument_group("quantization")
    g.add_argument("--method", choices=METHODS, default=_Q.method,
                   help="activation range calibration (default %(default)s)")
    g.add_argument("--percentile", type=number(PERCENTILE), default=_Q.percentile, help="percentile for --method percentile")
    g.add_argument("--keep-float", action="append", default=[], metavar="NODE_PATTERN",
                   help="keep matching nodes in float (glob over node names; 're:' prefix for a regex); repeatable")
    g.add_argument("--quantize-head", action="store_true",
                   help="also quantize the head's final score/box convolutions (kept float by default; "
                   "a two-stage model's RPN and box head are always quantized)")
    g.add_argument("--calib-cache", help="JSON file of calibration ranges: written, and reused only if it matches")


def quantize_options(args: argparse.Namespace) -> QuantizeOptions:
    """The :class:`QuantizeOptions` of the flags :func:`add_quantize_args` declared (validated)."""
    return QuantizeOptions(
        method=args.method,
        percentile=args.percentile,
        keep_float=tuple(args.keep_float),
        keep_head_float=not args.quantize_head,
        calib_cache=Path(args.calib_cache) if args.calib_cache else None,
    )


def add_accuracy_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`AccuracyCheckOptions` (and ``--val-data``), in an "accuracy check"
    group; :func:`accuracy_options` reads them."""
    g = p.add_argument_group("accuracy check")
    g.add_argument("--val-data", help="COCO-layout folder: evaluate FP32 and INT8 and report the AP drop")
    g.add_argument("--split", default=_A.split, help="split of --val-data (default %(default)s)")
    g.add_argument("--val-max-images", type=number(COUNT), help="evaluate only the first N images of --val-data")
    g.add_argument("--max-ap-drop", type=number(AP_DIFFERENCE),
                   help="fail (exit 3) when INT8 loses more AP than this "
                   f"(0-100 scale; without it: warn over {_A.budget})")


def accuracy_options(args: argparse.Namespace) -> AccuracyCheckOptions:
    """The :class:`AccuracyCheckOptions` of the flags :func:`add_accuracy_args` declared (validated)."""
    return AccuracyCheckOptions(split=args.split, max_images=args.val_max_images, max_ap_drop=args.max_ap_drop)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import tempfile

    from ..quantize.calibrate import ort_has_cache_api, quantize_onnx, read_quant_provenance
    from ..quantize.calibset import read_calib_set
    from ..quantize.gate import AccuracyDropError, quantize_gated

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    progress = not args.no_progress
    options, gate = quantize_options(args), accuracy_options(args)
    with tempfile.TemporaryDirectory(prefix="detnet_trt_quant_") as tmp:
        if args.val_data and options.calib_cache is None and ort_has_cache_api():
            # fix attempts re-quantize without recalibrating
            options = dataclasses.replace(options, calib_cache=Path(tmp) / "ranges.json")
        calib = read_calib_set(args.calib, args.calib_images)
        if not args.val_data:
            out = quantize_onnx(args.model, calib, args.output, options, force=args.force, progress=progress)
            _print_written(out, read_quant_provenance(out) or {}, args.keep_float)
            return _skipped_exit(out)
        try:  # with --max-ap-drop, the model reaches -o only once it passes
            out, report = quantize_gated(args.model, calib, args.output, args.val_data, options, gate,
                                         force=args.force, progress=progress)
        except AccuracyDropError as err:
            _print_report(err.report)  # type: ignore[attr-defined]
            raise
    _print_written(out, read_quant_provenance(out) or {}, args.keep_float)
    _print_report(report)
    return _skipped_exit(out)


def _print_report(report: Any) -> None:
    print("accuracy (COCO bbox, 0-100, ONNX Runtime CPU):")
    print(report.table())
    print(report.advice())


def _skipped_exit(out: Path) -> int:
    """1 (``EXIT_SKIPPED_IMAGES``) when calibration skipped unreadable images (named in the warning above)."""
    from ..quantize.calibrate import read_quant_provenance

    n = int((read_quant_provenance(out) or {}).get("calib_skipped", 0) or 0)
    if n:
        print(f"detnet-trt quantize: error: {n} calibration image(s) could not be read and were skipped "
              "(named above)", file=sys.stderr)
    return EXIT_SKIPPED_IMAGES if n else 0


def _print_written(out: Path, prov: dict[str, Any], keep_float: list[str]) -> None:
    plan = prov.get("plan", {})
    print(f"wrote {out}: INT8 Q/DQ ({prov.get('method')}, {prov.get('calib_images')} calibration images, "
          f"{prov.get('calib_skipped', 0)} skipped), {plan.get('quantized_nodes', '?')} nodes quantized, "
          f"kept float: {', '.join(plan.get('head_final_weights') or plan.get('head_final_layers', [])) or 'head quantized'}"
          + (f" + {keep_float}" if keep_float else ""))
