"""``detnet-trt serve``: a model behind PyTriton's tritonserver (HTTP, gRPC, metrics)."""

from __future__ import annotations

import argparse

from ..core.config import DEFAULT_CONF
from ._options import add_backend_args, backend_kwargs


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve a model (.pt, .onnx, .engine) with Triton's dynamic batcher over HTTP/gRPC + metrics",
        description="Runs the model in this process behind NVIDIA PyTriton's tritonserver: HTTP and gRPC "
        "(KServe v2) inference, Prometheus metrics at /metrics. Requests: letterboxed uint8 `images` + "
        "`orig_size` (see `detnet-trt client`). Binds to 127.0.0.1 unless --allow-remote.",
    )
    p.add_argument("--model", "-m", required=True, help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)")
    p.add_argument("--name", default="detnet", help="model name clients call (default detnet)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (exposes the unauthenticated server to the network)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--max-batch", type=int, default=8, help="largest dynamic batch (default 8)")
    p.add_argument("--queue-delay-us", type=int, default=1000,
                   help="dynamic batching max queue delay in microseconds (default 1000)")
    p.add_argument("--no-dynamic-batching", action="store_true", help="run every request on its own")
    p.add_argument("--conf", type=float, default=DEFAULT_CONF, help="score threshold (default %(default)s)")
    p.add_argument("--iou", type=float, default=0.5, help="NMS IoU threshold (default 0.5)")
    p.add_argument("--max-det", type=int, default=100, help="detections per image (default 100)")
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..runtime.backends import load_backend
    from ..serving.triton.server import check_bind_host, serve

    check_bind_host(args.host, args.allow_remote)  # before loading anything
    backend = load_backend(args.model, **backend_kwargs(args, args.model))
    serve(
        backend, name=args.name, host=args.host, allow_remote=args.allow_remote, http_port=args.port,
        grpc_port=args.grpc_port, metrics_port=args.metrics_port, max_batch=args.max_batch,
        dynamic_batching=not args.no_dynamic_batching, queue_delay_us=args.queue_delay_us, conf=args.conf,
        iou=args.iou, max_det=args.max_det,
    )
    return 0
