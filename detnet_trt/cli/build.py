"""``detnet-trt build``: a TensorRT engine (FP32 / FP16 / INT8) from a checkpoint or ONNX file.

The build flags are declared once, in :func:`add_build_args`, and make one
:class:`~detnet_trt.build.options.BuildOptions` in :func:`build_options` (which validates them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from ..build.options import INT8_FALLBACKS, NMS_MODES, BuildOptions, VerifyOptions, graph_nms
from ..core.errors import InputError
from ..core.limits import AP_DIFFERENCE, BATCH, COUNT, DLA_CORE, IOU, MAX_DET, PROBABILITY, TOPK, WORKSPACE_MIB
from ..core.meta import LAYOUTS
from ..quantize.options import METHODS
from ._options import number, number_list

_D = BuildOptions  # the defaults of every flag below


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
    p.add_argument("-o", "--output", required=True, help="engine file to write, e.g. model.engine")
    add_build_args(p)
    p.set_defaults(func=run)
    return p


def add_build_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`BuildOptions`, in a "build options" group; :func:`build_options` reads them."""
    g = p.add_argument_group("build options")
    prec = g.add_mutually_exclusive_group(required=True)
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="FP32 engine")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                      help="FP16 engine (builder flag on TensorRT 8.6/10; FP16-typed ONNX on 11)")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8",
                      help="INT8 engine from a Q/DQ ONNX (made here from --calib, or passed in); what is not "
                      "quantized runs in FP16 (see --int8-fallback), the box decode and top-k in FP32")
    g.add_argument("--int8-fallback", choices=INT8_FALLBACKS, default=None,
                   help="with --int8: precision of the layers without Q/DQ (default fp16, as NVIDIA's INT8 recipes; "
                   "fp32 for the most exact)")
    g.add_argument("--calib", help="calibration set file (`detnet-trt calib-set`); needed by --int8 unless the "
                   "ONNX is already quantized")
    g.add_argument("--calib-method", choices=METHODS, default=_D.calib_method,
                   help="INT8 calibration method (default %(default)s)")
    g.add_argument("--batch", type=number_list(BATCH, 1, 3), default=None,
                   help=f"dynamic batch MIN,OPT,MAX (default {','.join(str(b) for b in _D.batch)}; 1 with --dla), "
                   "or one fixed size")
    g.add_argument("--workspace", type=number(WORKSPACE_MIB), default=_D.workspace_mib,
                   help="builder workspace limit in MiB (default %(default)s)")
    g.add_argument("--dla", type=number(DLA_CORE), metavar="CORE", default=_D.dla_core,
                   help="run on this DLA core (Jetson; --fp16, or --int8 where the TensorRT's DLA takes Q/DQ); "
                   "a fixed batch (default 1 with --dla)")
    g.add_argument("--dla-gpu-fallback", action="store_true",
                   help="with --dla: run the layers the DLA cannot run (top-k, decode, ...) on the GPU")
    g.add_argument("--timing-cache", help="timing cache file (default: one per TensorRT version and GPU under "
                   "~/.cache/detnet-trt/timing), reused by later builds")
    g.add_argument("--no-timing-cache", action="store_true", help="build without a timing cache")
    g.add_argument("--nms", choices=NMS_MODES, default=_D.nms,
                   help="host: NMS in Python after the engine (default); efficient: EfficientNMS_TRT in the engine")
    g.add_argument("--max-det", type=number(MAX_DET), default=_D.post.max_det,
                   help="detections per image with --nms efficient (default %(default)s)")
    g.add_argument("--nms-iou", type=number(IOU), default=_D.post.iou,
                   help="IoU threshold of --nms efficient (default %(default)s)")
    g.add_argument("--nms-conf", type=number(PROBABILITY), default=_D.post.conf,
                   help="score threshold of --nms efficient (default %(default)s)")
    g.add_argument("--plugin", action="append", default=[], metavar="LIB.so",
                   help="load a TensorRT plugin library before parsing (repeatable)")
    g.add_argument("--layout", choices=LAYOUTS, default=_D.layout, help="input layout when exporting a checkpoint")
    g.add_argument("--topk", type=number(TOPK), default=_D.topk, help="candidates per image when exporting a checkpoint")
    v = p.add_argument_group("verification (after the build, needs the engine's GPU)")
    v.add_argument("--verify", metavar="IMAGES", help="run these images (a folder) through the new engine and its ONNX "
                   "file (ONNX Runtime) and record how their detections agree in the sidecar")
    v.add_argument("--verify-annotations", metavar="ANN.json", help="COCO annotations of the --verify images: "
                   "also compare COCO AP")
    v.add_argument("--max-ap-drop", type=number(AP_DIFFERENCE), metavar="AP", default=None,
                   help="with --verify-annotations: an engine losing more AP than this against its ONNX is an "
                   "error (exit 3; default: a warning over 0.3)")
    v.add_argument("--verify-max-images", type=number(COUNT), metavar="N", default=200,
                   help="at most this many --verify images (default %(default)s)")
    g.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    g.add_argument("--no-progress", action="store_true", help="no progress output")
    g.add_argument("--force", action="store_true", help="overwrite existing output files")


def build_options(args: argparse.Namespace) -> BuildOptions:
    """The :class:`BuildOptions` of the flags :func:`add_build_args` declared (validated)."""
    if args.int8_fallback is not None and args.precision != "int8":
        raise InputError(f"--int8-fallback {args.int8_fallback} applies to --int8 builds only",
                         "drop it, or build with --int8")
    return BuildOptions(
        precision=args.precision,
        calib=Path(args.calib) if args.calib else None,
        calib_method=args.calib_method,
        int8_fallback=args.int8_fallback or _D.int8_fallback,
        batch=_batch(args),
        workspace_mib=args.workspace,
        dla_core=args.dla,
        dla_gpu_fallback=args.dla_gpu_fallback,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None,
        no_timing_cache=args.no_timing_cache,
        nms=args.nms,
        post=graph_nms(conf=args.nms_conf, iou=args.nms_iou, max_det=args.max_det),
        plugins=tuple(Path(p) for p in args.plugin),
        layout=args.layout,
        topk=args.topk,
        verbose=args.verbose,
        force=args.force,
        progress=not args.no_progress,
        verify=_verify(args),
    )


def _verify(args: argparse.Namespace) -> VerifyOptions | None:
    if args.verify is None:
        for flag, value in (("--verify-annotations", args.verify_annotations), ("--max-ap-drop", args.max_ap_drop)):
            if value is not None:
                raise InputError(f"{flag} needs --verify IMAGES", "add --verify with the images' folder")
        return None
    return VerifyOptions(Path(args.verify), Path(args.verify_annotations) if args.verify_annotations else None,
                         args.max_ap_drop, args.verify_max_images)


def _batch(args: argparse.Namespace) -> tuple[int, int, int]:
    """``--batch`` as (min, opt, max); one size is a fixed batch; not given: the default, or with
    ``--dla`` a fixed batch of 1 (the DLA runs fixed shapes), said on stderr."""
    if args.batch is None:
        if args.dla is None:
            return _D.batch
        print("detnet-trt build: note: --dla builds a fixed batch of 1 (the DLA runs fixed shapes only); "
              "--batch N for another size", file=sys.stderr)
        return (1, 1, 1)
    b = list(args.batch)
    return cast("tuple[int, int, int]", tuple(b * 3 if len(b) == 1 else b))  # BuildOptions checks the length


def run(args: argparse.Namespace) -> int:
    from ..build.chain import build_engine
    from ..core.sidecar import read_sidecar, sidecar_path

    out = build_engine(args.model, args.output, build_options(args))
    info = read_sidecar(out)
    print(f"wrote {out} ({info.meta.precision}, TensorRT {info.tensorrt_version}, {info.gpu_name}) "
          f"and {sidecar_path(out).name}")
    return 0
