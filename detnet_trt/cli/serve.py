"""``detnet-trt serve``: a model behind PyTriton's tritonserver (HTTP, gRPC, metrics)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.limits import BATCH, PORT, QUEUE_DELAY_US
from ._options import add_backend_args, add_postprocess_args, backend_kwargs, number, postprocess_config

if TYPE_CHECKING:
    from ..serving.triton.server import ServeOptions


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="serve a model (.pt, .onnx, .engine) with Triton's dynamic batcher over HTTP/gRPC + metrics",
        description="Runs the model in this process behind NVIDIA PyTriton's tritonserver: HTTP and gRPC "
        "(KServe v2) inference, Prometheus metrics at /metrics. Requests: letterboxed uint8 `images` + "
        "`orig_size` (see `detnet-trt client`). Binds to 127.0.0.1 unless --allow-remote.",
    )
    p.add_argument("--model", "-m", required=True, help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)")
    add_serve_args(p)
    add_postprocess_args(p)
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def add_serve_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.serving.triton.server.ServeOptions` (see :func:`serve_options`)."""
    p.add_argument("--name", default="detnet", help="model name clients call (default detnet)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (exposes the unauthenticated server to the network)")
    p.add_argument("--port", type=number(PORT), default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=number(PORT), default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=number(PORT), default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--max-batch", type=number(BATCH), default=8, help="largest dynamic batch (default 8)")
    p.add_argument("--queue-delay-us", type=number(QUEUE_DELAY_US), default=1000,
                   help="dynamic batching max queue delay in microseconds (default 1000)")
    p.add_argument("--no-dynamic-batching", action="store_true", help="run every request on its own")


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The :class:`~detnet_trt.serving.triton.server.ServeOptions` of :func:`add_serve_args`' flags
    (it refuses a non-loopback ``--host`` without ``--allow-remote``)."""
    from ..serving.triton.server import ServeOptions

    return ServeOptions(
        name=args.name, host=args.host, http_port=args.port, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, allow_remote=args.allow_remote, max_batch=args.max_batch,
        dynamic_batching=not args.no_dynamic_batching, queue_delay_us=args.queue_delay_us,
    )


def run(args: argparse.Namespace) -> int:
    from ..runtime.backends import load_backend
    from ..serving.triton.server import check_ports_free, serve

    options = serve_options(args)  # before loading anything: the bind rule, ports, batching
    check_ports_free(options.host, options.port_flags())  # in seconds, not after loading the model (again in start)
    post = postprocess_config(args)
    backend = load_backend(args.model, **backend_kwargs(args, args.model))
    serve(backend, options=options, post=post)
    return 0
