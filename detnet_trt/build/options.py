"""The one options object of ``detnet-trt build`` (:class:`BuildOptions`) and its parsing helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DetnetError, InputError
from ..core.meta import PRECISIONS


class EngineBuildError(DetnetError):
    """TensorRT refused the model (parser errors, unsupported layer, out of memory, ...)."""


CHECKPOINT_SUFFIXES = (".pt", ".pth")


@dataclass
class BuildOptions:
    """Options of :func:`build_engine` (all recorded in the sidecar)."""

    precision: str = "fp16"
    calib: Path | None = None
    calib_method: str = "entropy"
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max of the dynamic batch
    workspace_mib: int = 2048
    dla_core: int | None = None
    timing_cache: Path | None = None  # None: the default per-user cache; see no_timing_cache
    no_timing_cache: bool = False
    nms: str = "host"  # "host" (post-processing on the host) or "efficient" (EfficientNMS_TRT)
    nms_conf: float = 0.001
    nms_iou: float = 0.5
    max_det: int = 100
    plugins: tuple[Path, ...] = ()
    layout: str = "nchw"  # export options, when starting from a checkpoint
    topk: int | None = None
    verbose: bool = False
    force: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise InputError(
                f"--batch {lo},{opt},{hi}: expected 1 <= min <= opt <= max", "for example --batch 1,4,8"
            )
        if self.workspace_mib < 16:
            raise InputError(f"--workspace {self.workspace_mib} MiB is too small", "use at least 16 (MiB)")
        if self.nms not in ("host", "efficient"):
            raise InputError(f"--nms {self.nms!r}: expected 'host' or 'efficient'")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise InputError(f"--dla {self.dla_core}: a DLA core index is 0 or more")
            if self.precision == "fp32":
                raise InputError("--dla needs --fp16 or --int8: the DLA has no FP32 mode")
        for lib in self.plugins:  # fail before the long steps, not after them
            if not Path(lib).expanduser().is_file():
                raise InputError(f"plugin library {lib} not found", "check the --plugin path (a .so file)")


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1,4,8"`` -> (1, 4, 8) (min, opt, max); one number ``"8"`` -> (8, 8, 8): a fixed batch."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise InputError(f"--batch {text!r}: expected MIN,OPT,MAX integers (or one integer)") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise InputError(f"--batch {text!r}: expected MIN,OPT,MAX, e.g. 1,4,8")
    return parts[0], parts[1], parts[2]
