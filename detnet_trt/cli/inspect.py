"""``detnet-trt inspect``: per layer type, precision, device (GPU / DLA) and tactic of an engine."""

from __future__ import annotations

import argparse

from ..core.limits import BATCH
from ._options import number


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect",
        help="per layer type, precision, device (GPU / DLA) and tactic of a TensorRT engine, table + JSON",
        description="Opens the engine (TensorRT and its GPU needed) and reads TensorRT's engine inspector: one row "
        "per layer (type, precision, device, tactic) and the device / precision counts. Types, precisions and "
        "tactics are recorded only in engines built with detailed profiling verbosity; others give layer names. "
        "A JSON file written by the inspector (trtexec --exportLayerInfo) is read without TensorRT.",
    )
    p.add_argument("engine", help="TensorRT engine (.engine / .plan, with its .json sidecar), or inspector JSON")
    p.add_argument("--batch", type=number(BATCH), default=None,
                   help="input batch the formats are shown for (default: the engine's optimum batch)")
    p.add_argument("--json", dest="json_out", help="write the layers and counts as JSON here")
    p.add_argument("--layer-info", help="write the inspector's own JSON here, as TensorRT gives it (what trtexec "
                   "--exportLayerInfo writes; trt-engine-explorer reads it)")
    p.add_argument("--force", action="store_true", help="overwrite the --json / --layer-info files")
    p.set_defaults(func=run)
    return p


def _read(args: argparse.Namespace) -> tuple[str, str]:
    """(inspector JSON, what it came from)."""
    from pathlib import Path

    from ..core.errors import ModelFileError

    path = Path(args.engine)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file", "pass a TensorRT engine or an inspector JSON file")
    if path.suffix.lower() == ".json":
        return path.read_text(encoding="utf-8", errors="replace"), f"{path} (inspector JSON)"
    from ..runtime.backends.tensorrt import TensorRTBackend

    backend = TensorRTBackend(path)
    with backend:
        text = backend.layer_information(args.batch)
        return text, f"{path}: TensorRT {backend.trt_version} on {backend.gpu_name}"


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..core.fileio import atomic_write_text, check_writable
    from ..trt.inspector import InspectorError, format_layers, parse_engine_information

    for out in (args.json_out, args.layer_info):
        if out:
            check_writable(out, args.force, inputs=(args.engine,))
    text, source = _read(args)
    try:
        info = parse_engine_information(text)
    except InspectorError as err:
        raise InspectorError(f"{args.engine}: {err.message}",
                             "pass a TensorRT engine, or the JSON trtexec --exportLayerInfo writes "
                             "(not the engine's .json sidecar)") from None
    print(f"{source}: {len(info.layers)} layers")
    print(format_layers(info))
    if info.layers and not info.detailed:
        print("warning: this engine records layer names only (built without detailed profiling verbosity): "
              "no types, precisions, devices or tactics; rebuild it with ProfilingVerbosity.DETAILED to see them",
              file=sys.stderr)
    if args.json_out:
        record = {"source": source, **info.to_dict()}
        atomic_write_text(args.json_out, json.dumps(record, indent=1), force=args.force)
        print(f"layers: {args.json_out}")
    if args.layer_info:
        atomic_write_text(args.layer_info, text, force=args.force)
        print(f"inspector JSON: {args.layer_info}")
    return 0
