"""Option groups shared by several subcommands (not a subcommand: the name starts with ``_``),
and the checked argparse types every numeric option uses.

**The rule** (``tests/cli/test_bad_values.py`` walks every subcommand's parser and enforces it):
every option that takes a number uses a type made here, :func:`number`, :func:`number_list` or
:func:`size`, from a :class:`~detnet_trt.core.limits.Range` of ``detnet_trt/core/limits.py`` (add a
range there if none fits); never ``type=int`` / ``type=float``. A bad value is then one line that
names the option, exit 2, before any work: ``detnet-trt infer: error: argument --batch: expected an
integer in 1..256, got 100000 (...)``. The options objects check the same ranges (``Range.check``).
A non-numeric ``type=`` is listed in :data:`TEXT_TYPES`.

Each group declares its flags once and builds its options object from the parsed arguments:

- :func:`add_postprocess_args` / :func:`postprocess_config`: ``--conf``, ``--iou``, ``--max-det``
  -> :class:`~detnet_trt.core.config.PostprocessConfig`;
- :func:`add_backend_args` / :func:`backend_kwargs`: ``--device``, ``--threads`` -> the keyword
  arguments of the backend :func:`~detnet_trt.runtime.backends.load_backend` picks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import PostprocessConfig
from ..core.images import EXIT_SKIPPED_IMAGES, SkippedImages
from ..core.limits import IOU, MAX_DET, PROBABILITY, THREADS, Range


class Number:
    """An argparse ``type=``: text -> a number of ``range`` (an ``int`` for integer ranges), or an
    :class:`argparse.ArgumentTypeError` saying what was expected (argparse adds the option's name)."""

    def __init__(self, range_: Range) -> None:
        self.range = range_
        self.__name__ = range_.describe()  # argparse names a type by it

    def parse(self, text: str) -> int | float:
        try:
            return int(text) if self.range.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.range.describe()}, got {text!r}") from None

    def __call__(self, text: str) -> Any:
        value = self.parse(text)
        problem = self.range.problem(value, text.strip())
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.range.describe()})"

    def bad_values(self) -> list[str]:
        """Texts this type refuses: just outside each end, not numbers, not finite, huge."""
        r, step = self.range, 1 if self.range.integer else 1e-9
        out = [str(int(r.lo) - 1) if r.integer else repr(r.lo - max(step, abs(r.lo) * 1e-6))]
        if r.lo_open:
            out.append(f"{r.lo:g}")
        out.append(str(int(r.hi) + 1) if r.integer else repr(r.hi * 1.5 + 1))
        if r.hi_open:
            out.append(f"{r.hi:g}")
        if r.integer:
            out.append("1.5" if r.lo <= 1.5 <= r.hi else f"{r.lo:g}.5")
        return out + (["-1"] if r.lo > -1 else []) + ["abc", "", "nan", "inf", "-inf", "1e400", str(10**20)]


class NumberList(Number):
    """Comma-separated numbers of ``range`` (``1,4,8``), ``min_len`` to ``max_len`` of them -> a list."""

    def __init__(self, range_: Range, min_len: int = 1, max_len: int = 64) -> None:
        super().__init__(range_)
        self.min_len, self.max_len = min_len, max_len
        self.__name__ = f"comma-separated list of {range_.describe()}"

    def __call__(self, text: str) -> Any:
        items = [t for t in text.split(",") if t.strip()]
        if not self.min_len <= len(items) <= self.max_len:
            n = f"{self.min_len}" if self.min_len == self.max_len else f"{self.min_len} to {self.max_len}"
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated values, each {self.range.describe()}, "
                                             f"got {text!r}")
        return [Number.__call__(self, t.strip()) for t in items]

    def bad_values(self) -> list[str]:
        return [f"1,{b}" for b in super().bad_values()[:2]] + [",", "1,,abc", ",".join(["1"] * (self.max_len + 1))]


class Size(Number):
    """``WxH`` (``order="wh"``) or ``HxW`` / ``H,W`` (``order="hw"``), each side in ``range`` (and a
    multiple of ``multiple``); one number ``N`` means N x N when ``square`` -> ``(height, width)``."""

    def __init__(self, range_: Range, order: str = "wh", square: bool = False, multiple: int = 1) -> None:
        super().__init__(range_)
        self.order, self.square, self.multiple = order, square, multiple
        form = "WxH" if order == "wh" else "HxW"
        self.form = f"N or {form}" if square else form
        self.__name__ = f"size {self.form}"

    def __call__(self, text: str) -> Any:
        parts = text.lower().replace(",", "x").split("x")
        if len(parts) not in ((1, 2) if self.square else (2,)):
            raise argparse.ArgumentTypeError(f"expected {self.form}, each side {self.range.describe()}, got {text!r}")
        sides = [Number.__call__(self, p.strip()) for p in parts]
        if any(side % self.multiple for side in sides):
            raise argparse.ArgumentTypeError(f"expected {self.form} with sides multiples of {self.multiple}, got {text!r}")
        first, second = sides[0], sides[-1]
        return (second, first) if self.order == "wh" else (first, second)

    def bad_values(self) -> list[str]:
        hi = int(self.range.hi) + 1
        odd = [f"{int(self.range.lo) + 1}x{int(self.range.lo) + 1}"] if self.multiple > 1 else []
        return ["0x0", "-1x10", f"{hi}x{hi}", f"10x{hi}", "axb", "10x", "x", "1x2x3", "nanxnan", "", *odd]


def number(range_: Range) -> Number:
    """The argparse ``type=`` of one number in ``range_``."""
    return Number(range_)


def number_list(range_: Range, min_len: int = 1, max_len: int = 64) -> NumberList:
    """The argparse ``type=`` of comma-separated numbers in ``range_``."""
    return NumberList(range_, min_len, max_len)


def size(range_: Range, order: str = "wh", square: bool = False, multiple: int = 1) -> Size:
    """The argparse ``type=`` of an image size (``WxH`` or ``HxW``) -> ``(height, width)``."""
    return Size(range_, order, square, multiple)


#: The argparse ``type=`` callables that parse text which is not a number (none yet): any other
#: ``type=`` must be a :class:`Number`.
TEXT_TYPES: tuple[Callable[[str], Any], ...] = ()

DEVICES = ("cpu", "cuda", "tensorrt")


@dataclass
class CommandSkips(SkippedImages):
    """The :class:`~detnet_trt.core.images.SkippedImages` of one command: prints one line per
    unreadable image as it is met (``detnet-trt eval: warning: cannot read image x.jpg: empty file;
    skipped``), and gives the command's exit code at the end (:meth:`exit_code`)."""

    command: str = ""

    def __post_init__(self) -> None:
        self.on_skip = self._show

    def _show(self, path: str, why: str) -> None:
        print(f"detnet-trt {self.command}: warning: cannot read image {path}: {why}; skipped", file=sys.stderr, flush=True)

    def exit_code(self) -> int:
        """0, or :data:`~detnet_trt.core.images.EXIT_SKIPPED_IMAGES` after one line counting (and
        naming) the images that were skipped."""
        if not len(self):
            return 0
        print(f"detnet-trt {self.command}: error: {self.summary()}", file=sys.stderr, flush=True)
        return EXIT_SKIPPED_IMAGES


def skip_printer(command: str) -> CommandSkips:
    """The :class:`CommandSkips` of ``command`` (its name as the lines show it)."""
    return CommandSkips(command=command)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=DEVICES,
        default=None,
        help="where .pt / .onnx models run: cpu (default), cuda, or tensorrt (ONNX Runtime's TensorRT provider); "
        "engines always run on their GPU",
    )
    p.add_argument("--threads", type=number(THREADS), default=None, help="ONNX Runtime intra-op threads (default: its own)")


def backend_kwargs(args: argparse.Namespace, model: str | Path) -> dict[str, Any]:
    """Constructor keyword arguments of the backend :func:`load_backend` picks for ``model``."""
    suffix = Path(model).suffix.lower()
    device = getattr(args, "device", None)
    if suffix in (".pt", ".pth"):
        return {"device": "cuda" if device in ("cuda", "tensorrt") else "cpu"} if device else {}
    if suffix == ".onnx":
        kw: dict[str, Any] = {}
        if device:
            kw["providers"] = device
        if getattr(args, "threads", None):
            kw["threads"] = args.threads
        return kw
    return {}


def add_postprocess_args(
    p: argparse.ArgumentParser,
    defaults: PostprocessConfig = PostprocessConfig(),
    *,
    per: str = "image",
    conf: bool = True,
    max_det: bool = True,
    note: str = "",
) -> None:
    """``--conf`` (unless ``conf`` is false), ``--iou`` and ``--max-det`` (unless ``max_det`` is
    false) with ``defaults``.

    ``per`` names the unit of ``--max-det`` ("image", "frame"); ``note`` prefixes every help text
    (e.g. "--nms onnx: ")."""
    if conf:
        p.add_argument("--conf", type=number(PROBABILITY), default=defaults.conf, help=f"{note}score threshold (default %(default)s)")
    p.add_argument("--iou", type=number(IOU), default=defaults.iou, help=f"{note}NMS IoU threshold (default %(default)s)")
    if max_det:
        p.add_argument("--max-det", type=number(MAX_DET), default=defaults.max_det,
                       help=f"{note}detections per {per} at most (default %(default)s)")


def postprocess_config(args: argparse.Namespace, defaults: PostprocessConfig = PostprocessConfig()) -> PostprocessConfig:
    """The :class:`PostprocessConfig` of the flags :func:`add_postprocess_args` declared (a flag
    the command does not have keeps its value from ``defaults``)."""
    return PostprocessConfig(
        conf=getattr(args, "conf", defaults.conf),
        iou=getattr(args, "iou", defaults.iou),
        max_det=getattr(args, "max_det", defaults.max_det),
    )
