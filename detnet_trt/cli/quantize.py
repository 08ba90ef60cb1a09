"""``detnet-trt quantize``: FP32 ONNX + calibration set -> Q/DQ INT8 ONNX (ONNX Runtime quantizer)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "quantize",
        help="INT8 post-training quantization to a Q/DQ ONNX (TensorRT explicit quantization)",
        description="Calibrate the FP32 ONNX on a calibration set (through the runtime's letterbox) with ONNX "
        "Runtime and write a Q/DQ ONNX: per-channel symmetric INT8 weights, symmetric INT8 activations, Q/DQ on "
        "convolution inputs and fusable adds; the head's final layers and decode stay float. With --val-data, "
        "FP32 and INT8 are evaluated and compared against a 0.3 AP budget.",
    )
    p.add_argument("model", help="FP32 ONNX written by detnet-trt export")
    p.add_argument("--calib", required=True, help="calibration set file (detnet-trt calib-set)")
    p.add_argument("--calib-images", help="folder the set's paths are relative to (default: the set's root)")
    p.add_argument("-o", "--output", required=True, help="Q/DQ ONNX to write, e.g. model.int8.onnx")
    p.add_argument("--method", choices=("entropy", "minmax", "percentile"), default="entropy",
                   help="activation range calibration (default entropy)")
    p.add_argument("--percentile", type=float, default=99.999, help="percentile for --method percentile")
    p.add_argument("--keep-float", action="append", default=[], metavar="NODE_PATTERN",
                   help="keep matching nodes in float (glob over node names; 're:' prefix for a regex); repeatable")
    p.add_argument("--quantize-head", action="store_true",
                   help="also quantize the head's final score/box convolutions (kept float by default)")
    p.add_argument("--calib-cache", help="JSON file of calibration ranges: written, and reused only if it matches")
    p.add_argument("--val-data", help="COCO-layout folder: evaluate FP32 and INT8 and report the AP drop")
    p.add_argument("--split", default="val", help="split of --val-data (default val)")
    p.add_argument("--val-max-images", type=int, help="evaluate only the first N images of --val-data")
    p.add_argument("--max-ap-drop", type=float,
                   help="fail (exit 3) when INT8 loses more AP than this (0-100 scale; without it: warn over 0.3)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import logging
    import tempfile
    from pathlib import Path

    from ..quantize.calibrate import ort_has_cache_api, quantize_onnx, read_quant_provenance
    from ..quantize.calibset import read_calib_set
    from ..quantize.gate import AccuracyDropError, accuracy_check

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    progress = not args.no_progress
    with tempfile.TemporaryDirectory(prefix="detnet_trt_quant_") as tmp:
        reuse = args.val_data and ort_has_cache_api()  # fix attempts re-quantize without recalibrating
        cache = args.calib_cache or (str(Path(tmp) / "ranges.json") if reuse else None)
        calib = read_calib_set(args.calib, args.calib_images)
        out = quantize_onnx(
            args.model, calib, args.output, method=args.method, keep_float=args.keep_float,
            force=args.force, progress=progress, keep_head_float=not args.quantize_head,
            percentile=args.percentile, calib_cache=cache,
        )
        prov = read_quant_provenance(out) or {}
        plan = prov.get("plan", {})
        print(f"wrote {out}: INT8 Q/DQ ({prov.get('method')}, {prov.get('calib_images')} calibration images, "
              f"{prov.get('calib_skipped', 0)} skipped), {plan.get('quantized_nodes', '?')} nodes quantized, "
              f"kept float: {', '.join(plan.get('head_final_weights') or plan.get('head_final_layers', [])) or 'head quantized'}"
              + (f" + {args.keep_float}" if args.keep_float else ""))
        if not args.val_data:
            return 0
        report = accuracy_check(
            args.model, out, args.val_data, calib=calib,
            split=args.split, progress=progress, max_images=args.val_max_images, calib_cache=cache,
        )
    print("accuracy (COCO bbox, 0-100, ONNX Runtime CPU):")
    print(report.table())
    print(report.advice())
    if args.max_ap_drop is not None and report.drop > args.max_ap_drop:
        raise AccuracyDropError(
            f"INT8 loses {report.drop:.2f} AP, more than --max-ap-drop {args.max_ap_drop:g}",
            "keep the layers named above in float with --keep-float",
        )
    return 0
