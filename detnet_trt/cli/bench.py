"""``detnet-trt bench``: trtexec-style latency / throughput of a model per batch size."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.limits import BATCH, COUNT, SECONDS, SECONDS_OR_ZERO, SIDE
from ._options import add_backend_args, backend_kwargs, number, number_list, size

PROFILE_RUNS = 20  # --profile-layers without a count

if TYPE_CHECKING:
    from ..apps.bench import BenchOptions


def _command(args: argparse.Namespace) -> str:
    """The equivalent command line, for the record."""
    import shlex

    parts = ["detnet-trt", "bench", "--model", args.model, "--batch", ",".join(map(str, args.batch))]
    if args.iterations is not None:
        parts += ["--iterations", str(args.iterations)]
    else:
        parts += ["--duration", str(args.duration if args.duration is not None else 3.0)]
    parts += ["--warmup", str(args.warmup), "--frame-size", f"{args.frame_size[1]}x{args.frame_size[0]}"]
    if args.no_e2e:
        parts.append("--no-e2e")
    if args.profile_layers:
        parts += ["--profile-layers", str(args.profile_layers)]
    if args.device:
        parts += ["--device", args.device]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    return " ".join(shlex.quote(p) for p in parts)


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.apps.bench.BenchOptions`."""
    p.add_argument("--batch", type=number_list(BATCH), default=[1], help="batch sizes, e.g. 1,4,8 (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", type=number(SECONDS), default=None, help="seconds timed per batch size and figure (default 3)")
    g.add_argument("--iterations", type=number(COUNT), default=None, help="exact number of timed runs instead of --duration")
    p.add_argument("--warmup", type=number(SECONDS_OR_ZERO), default=1.0, help="warm-up seconds before each figure (default 1)")
    p.add_argument("--frame-size", type=size(SIDE), default=(720, 1280), help="end-to-end frame size WxH (default 1280x720)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end figure")
    p.add_argument("--profile-layers", type=number(COUNT), nargs="?", const=PROFILE_RUNS, default=None, metavar="RUNS",
                   help=f"TensorRT engines: per-layer times from TensorRT's profiler (as trtexec --dumpProfile), "
                   f"in RUNS runs of their own per batch size (default {PROFILE_RUNS}), slowest first, in the record")


def bench_options(args: argparse.Namespace) -> BenchOptions:
    from ..apps.bench import BenchOptions

    return BenchOptions(batches=tuple(args.batch), duration=args.duration, iterations=args.iterations,
                        warmup=args.warmup, end_to_end=not args.no_e2e, frame_size=args.frame_size,
                        profile_layers=args.profile_layers or 0)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="latency / throughput per batch size (infer-only and end-to-end), JSON + PNG",
        description="Like trtexec: warm-up, then latency min/mean/median/p90/p95/p99/max and throughput per batch "
        "size, for the backend call alone and end to end (letterbox + infer + NMS on real-size frames); the "
        "GPU-side split when the backend measures it; a warning when the run is unstable.",
    )
    p.add_argument("--model", "-m", required=True, help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)")
    add_bench_args(p)
    p.add_argument("--json", dest="json_out", help="write the full record (stats, samples, machine) here")
    p.add_argument("--plot", help="write the latency/throughput PNG here")
    p.add_argument("--force", action="store_true", help="overwrite --json / --plot files")
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..apps.bench import benchmark, format_layer_table, format_table, plot_benchmark
    from ..core.fileio import atomic_write_text, check_writable, sha256_file
    from ..runtime.backends import load_backend

    options = bench_options(args)
    for out in (args.json_out, args.plot):
        if out:
            check_writable(out, args.force, inputs=(args.model,))
    with load_backend(args.model, **backend_kwargs(args, args.model)) as backend:
        record = benchmark(backend, options, progress=True)
    record["model"]["path"] = args.model
    record["model"]["sha256"] = sha256_file(args.model)
    record["command"] = _command(args)
    m = record["machine"]
    print(f"{args.model}: {record['backend'].get('backend')} {record['model']['precision']}, input "
          f"{record['model']['input_size']}, on {m['cpu']} ({m['cpu_cores_usable']} cores)"
          + (f", {m['gpus'][0].get('name')}" if m.get("gpus") else ""))
    print("latency per batch in ms")
    print(format_table(record))
    if options.profile_layers:
        print(format_layer_table(record))
    for w in record["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(record, indent=1), force=args.force)
        print(f"record: {args.json_out}")
    if args.plot:
        plot_benchmark(record, args.plot)
        print(f"plot: {args.plot}")
    return 0
