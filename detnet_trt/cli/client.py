"""``detnet-trt client``: send images to a Triton server and print or save the detections."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "client",
        help="send images to `detnet-trt serve` or a Triton serving an export-triton repository",
        description="Letterboxes each image to the model's input (read from the server's model config), sends it "
        "with tritonclient and prints one JSON line per image; --out DIR also saves <stem>.json and an annotated "
        "<stem>.jpg per image.",
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--url", default="127.0.0.1:8000",
                   help="server HOST:PORT, or http://HOST:PORT / grpc://HOST:PORT (the scheme picks the protocol; "
                   "default 127.0.0.1:8000; gRPC: :8001)")
    p.add_argument("--model", default="detnet", help="model name on the server (default detnet)")
    p.add_argument("--protocol", choices=("http", "grpc"), default=None,
                   help="default: the --url scheme, else http")
    p.add_argument("--labels", help="class names file, one a line (default: from the server's config if it has them)")
    p.add_argument("--out", help="folder for <stem>.json and annotated <stem>.jpg")
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from ..serving.triton.client import run_client
    from ._options import skip_printer

    skipped = skip_printer("client")
    records = run_client(
        args.images, url=args.url, model=args.model, protocol_name=args.protocol, out_dir=args.out,
        labels=args.labels, force=args.force, skipped=skipped,
    )
    for rec in records:
        print(json.dumps(rec))
    return skipped.exit_code()
