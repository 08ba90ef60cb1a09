"""``detnet-trt export CHECKPOINT -o model.onnx``: checkpoint -> ONNX (see detnet_trt.export.onnx)."""

from __future__ import annotations

import argparse

from ..core.config import GRAPH_NMS
from ..core.limits import OPSET, TOPK
from ._options import add_postprocess_args, number, postprocess_config


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (uint8 input, top-K or in-graph NMS outputs)",
        description="Export a detnet_trt checkpoint to an ONNX file that ONNX Runtime, INT8 calibration and "
        "TensorRT (8.6 and newer) all use. The graph takes uint8 images (N dynamic, fixed H x W), normalises "
        "them itself, and returns per-image top-K boxes/scores/class ids (host NMS) or, with --nms onnx, "
        "final detections padded to --max-det plus a count.",
    )
    p.add_argument("checkpoint", help="detnet_trt checkpoint (.pt)")
    p.add_argument("-o", "--output", default=None, help="output .onnx (default: CHECKPOINT with .onnx suffix)")
    p.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw",
                   help="input layout; nhwc spares the host a transpose (default: nchw)")
    p.add_argument("--topk", type=number(TOPK), default=None,
                   help="candidates per image before NMS (default: the checkpoint's, 1000 for detnet59; max 3840)")
    p.add_argument("--nms", choices=("host", "onnx"), default="host",
                   help="host: NMS runs on the host (default); onnx: standard ONNX NonMaxSuppression in the graph, "
                   "with --conf, --iou and --max-det baked in (the host can raise --conf; rows are padded to --max-det)")
    add_postprocess_args(p, GRAPH_NMS, note="--nms onnx: ")
    p.add_argument("--opset", type=number(OPSET), default=17, help="ONNX opset (default 17, the newest TensorRT 8.6 reads)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="torch exporter (default dynamo; torchscript is torch's legacy exporter)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check after export")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core.onnx_meta import read_onnx_meta
    from ..export.onnx import export_onnx

    post = postprocess_config(args, GRAPH_NMS)  # out-of-range values fail here, before the export starts
    output = args.output or str(Path(args.checkpoint).with_suffix(".onnx"))
    print(f"exporting {args.checkpoint} -> {output} (torch.export takes 10-60 s) ...", flush=True)
    path = export_onnx(
        args.checkpoint,
        output,
        layout=args.layout,
        topk=args.topk,
        nms=args.nms,
        post=post,
        opset=args.opset,
        force=args.force,
        exporter=args.exporter,
        verify=not args.no_verify,
    )
    meta = read_onnx_meta(path)
    outs = (
        f"boxes [N,{meta.topk},4], scores [N,{meta.topk}], class_ids [N,{meta.topk}] (NMS on the host)"
        if meta.nms == "host"
        else f"det_boxes [N,{meta.max_det},4], det_scores, det_class_ids, num_dets [N] (in-graph NMS)"
    )
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB, opset {args.opset}): images uint8 {' x '.join(map(str, meta.input_shape()))} -> {outs}")
    print(f"model {meta.model}, {meta.num_classes} classes, checkpoint sha256 {meta.checkpoint_sha256[:12]}..."
          + ("" if args.no_verify else "; ONNX Runtime matches PyTorch"))
    return 0
