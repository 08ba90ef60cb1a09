"""``detnet-trt``: one subcommand per module in this package.

Each module ``detnet_trt/cli/<name>.py`` (not starting with ``_``) defines
``register(subparsers) -> argparse.ArgumentParser`` which adds its subcommand and sets
``func=run`` where ``run(args) -> int`` is a thin wrapper over a library function. Modules must
import only argparse-level things at top level; heavy imports go inside ``run``.

A :class:`~detnet_trt.core.errors.DetnetError` is printed as one line and exits with code 2; so is
an ``OSError`` that escapes a command (a read-only folder, a full disk, a missing file: the
operating system's message with the path). The traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__
from ..core.errors import DetnetError

# The order subcommands are listed in ``--help``; modules not named here come last.
ORDER = [
    "train", "synth", "import_detnet_pytorch", "export", "calib_set", "quantize", "build", "inspect", "infer", "camera",
    "bench", "eval", "compare", "export_triton", "serve", "client", "demo",
]


def _command_modules() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (what is wrong, where the help is) and exit 2,
    like every other error of the CLI, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="detnet-trt",
        description="DetNet detectors from PyTorch to ONNX and TensorRT (FP16 / INT8), with runtime, camera loop and benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _command_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def _os_message(err: OSError) -> str:
    """One line for an ``OSError``: what failed, on which path(s)."""
    what = err.strerror or str(err) or type(err).__name__
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    where = f": {' -> '.join(str(p) for p in paths)}" if paths else ""
    return f"{what}{where}".replace("\n", " ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed (exit 2)
        return done.code if isinstance(done.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DetnetError as err:
        if args.debug:
            traceback.print_exc()
        print(f"detnet-trt {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        if args.debug:
            traceback.print_exc()
        print(f"detnet-trt {args.command}: error: {_os_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"detnet-trt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
