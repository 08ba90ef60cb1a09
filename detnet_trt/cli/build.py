"""``detnet-trt build``: a TensorRT engine (FP32 / FP16 / INT8) from a checkpoint or ONNX file."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build",
        help="build a TensorRT engine (FP16 / INT8) with its metadata sidecar",
        description="Export (from a checkpoint), quantize (--int8 with --calib), parse, configure and build a "
        "TensorRT engine, written atomically with <engine>.json (model metadata, TensorRT version, GPU, hashes, "
        "options). The GPU is CUDA device 0: choose another with CUDA_VISIBLE_DEVICES. Without TensorRT the ONNX steps still run and their files are kept; the command then says "
        "TensorRT is missing and exits 2. See plugins/README.md for --nms efficient and --plugin.",
    )
    p.add_argument("model", help="checkpoint (.pt) or ONNX file (FP32, or Q/DQ INT8 from `detnet-trt quantize`)")
    prec = p.add_mutually_exclusive_group(required=True)
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="FP32 engine")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                      help="FP16 engine (builder flag on TensorRT 8.6/10; FP16-typed ONNX on 11)")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8",
                      help="INT8 engine from a Q/DQ ONNX (made here from --calib, or passed in)")
    p.add_argument("--calib", help="calibration set file (`detnet-trt calib-set`); needed by --int8 unless the "
                   "ONNX is already quantized")
    p.add_argument("--calib-method", choices=("entropy", "minmax", "percentile"), default="entropy",
                   help="INT8 calibration method (default entropy)")
    p.add_argument("-o", "--output", required=True, help="engine file to write, e.g. model.engine")
    p.add_argument("--batch", default="1,1,8", help="dynamic batch MIN,OPT,MAX (default 1,1,8), or one fixed size")
    p.add_argument("--workspace", type=int, default=2048, help="builder workspace limit in MiB (default 2048)")
    p.add_argument("--dla", type=int, metavar="CORE", default=None,
                   help="run on this DLA core (Jetson), layers the DLA cannot run fall back to the GPU")
    p.add_argument("--timing-cache", help="timing cache file (default: one per TensorRT version and GPU under "
                   "~/.cache/detnet-trt/timing), reused by later builds")
    p.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    p.add_argument("--nms", choices=("host", "efficient"), default="host",
                   help="host: NMS in Python after the engine (default); efficient: EfficientNMS_TRT in the engine")
    p.add_argument("--max-det", type=int, default=100, help="detections per image with --nms efficient (default 100)")
    p.add_argument("--nms-iou", type=float, default=0.5, help="IoU threshold of --nms efficient (default 0.5)")
    p.add_argument("--nms-conf", type=float, default=0.001, help="score threshold of --nms efficient (default 0.001)")
    p.add_argument("--plugin", action="append", default=[], metavar="LIB.so",
                   help="load a TensorRT plugin library before parsing (repeatable)")
    p.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw", help="input layout when exporting a checkpoint")
    p.add_argument("--topk", type=int, default=None, help="candidates per image when exporting a checkpoint")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..build.chain import build_engine
    from ..build.options import parse_batch
    from ..core.sidecar import read_sidecar, sidecar_path

    out = build_engine(
        args.model,
        args.output,
        precision=args.precision,
        calib=args.calib,
        calib_method=args.calib_method,
        batch=parse_batch(args.batch),
        workspace_mib=args.workspace,
        dla_core=args.dla,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None,
        no_timing_cache=args.no_timing_cache,
        nms=args.nms,
        nms_conf=args.nms_conf,
        nms_iou=args.nms_iou,
        max_det=args.max_det,
        plugins=tuple(args.plugin),
        layout=args.layout,
        topk=args.topk,
        verbose=args.verbose,
        force=args.force,
        progress=not args.no_progress,
    )
    info = read_sidecar(out)
    print(f"wrote {out} ({info.meta.precision}, TensorRT {info.tensorrt_version}, {info.gpu_name}) "
          f"and {sidecar_path(out).name}")
    return 0
