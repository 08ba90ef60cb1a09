"""The one options object of ``detnet-trt build`` (:class:`BuildOptions`), validated where it is
made, and its parsing helpers. A bad value raises :class:`~detnet_trt.core.errors.InputError`
naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import EFFICIENT_NMS, PostprocessConfig
from ..core.errors import DetnetError, InputError
from ..core.limits import AP_DIFFERENCE, BATCH, COUNT, DLA_CORE, TOPK, WORKSPACE_MIB, check_ranges
from ..core.meta import LAYOUTS, PRECISIONS
from ..quantize.options import METHODS


class EngineBuildError(DetnetError):
    """TensorRT refused the model (parser errors, unsupported layer, out of memory, ...)."""


CHECKPOINT_SUFFIXES = (".pt", ".pth")
NMS_MODES = ("host", "efficient")  # host: post-processing on the host; efficient: EfficientNMS_TRT
INT8_FALLBACKS = ("fp16", "fp32")  # what --int8 runs the layers without Q/DQ in
_NOT_RECORDED = ("force", "progress", "extra", "verbose", "post", "verify")  # how a build runs, not what it makes


@dataclass(frozen=True)
class BuildOptions:
    """Options of :func:`~detnet_trt.build.chain.build_engine` (recorded in the sidecar, see
    :meth:`record`). Paths given as strings are turned into :class:`~pathlib.Path`."""

    precision: str = "fp16"
    calib: Path | None = None  # calibration set file: --int8 from an FP32 ONNX or a checkpoint
    calib_method: str = "entropy"
    int8_fallback: str = "fp16"  # one of INT8_FALLBACKS: precision of what INT8 does not cover
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max of the dynamic batch
    workspace_mib: int = 2048
    dla_core: int | None = None
    dla_gpu_fallback: bool = False  # layers the DLA cannot run go to the GPU (only when asked)
    timing_cache: Path | None = None  # None: the default per-user cache; see no_timing_cache
    no_timing_cache: bool = False
    nms: str = "host"  # one of NMS_MODES
    post: PostprocessConfig = EFFICIENT_NMS  # the settings of --nms efficient (score, IoU, detections)
    plugins: tuple[Path, ...] = ()
    layout: str = "nchw"  # export options, when starting from a checkpoint
    topk: int | None = None
    verbose: bool = False
    force: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # more sidecar "build" entries
    verify: VerifyOptions | None = None  # --verify: the engine against its ONNX on these images

    def __post_init__(self) -> None:
        if self.calib is not None:
            object.__setattr__(self, "calib", Path(os.fspath(self.calib)))
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(os.fspath(self.timing_cache)))
        object.__setattr__(self, "plugins", tuple(Path(os.fspath(p)) for p in self.plugins))
        object.__setattr__(self, "batch", tuple(self.batch))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` naming the flag of the first bad value (run on construction)."""
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}", "pass --fp32, --fp16 or --int8")
        if self.int8_fallback not in INT8_FALLBACKS:
            raise InputError(f"--int8-fallback {self.int8_fallback!r}: expected fp16 or fp32")
        if self.int8_fallback != "fp16" and self.precision != "int8":
            raise InputError("--int8-fallback applies to --int8 builds only", "drop it, or build with --int8")
        if self.calib_method not in METHODS:
            raise InputError(f"--calib-method {self.calib_method!r}: unknown calibration method",
                             f"use one of {', '.join(METHODS)}")
        if len(self.batch) != 3:
            raise InputError(f"--batch {self.batch}: expected MIN,OPT,MAX", "for example --batch 1,4,8")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise InputError(
                f"--batch {lo},{opt},{hi}: expected 1 <= min <= opt <= max", "for example --batch 1,4,8"
            )
        check_ranges(*(("--batch", BATCH, b) for b in self.batch))
        if self.workspace_mib < 16:
            raise InputError(f"--workspace {self.workspace_mib} MiB is too small", "use at least 16 (MiB)")
        if self.nms not in NMS_MODES:
            raise InputError(f"--nms {self.nms!r}: expected 'host' or 'efficient'")
        if self.layout not in LAYOUTS:
            raise InputError(f"--layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")
        if self.topk is not None and self.topk < 1:
            raise InputError(f"--topk {self.topk}: expected at least 1 candidate per image")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise InputError(f"--dla {self.dla_core}: a DLA core index is 0 or more")
            if self.precision == "fp32":
                raise InputError("--dla needs --fp16 or --int8: the DLA has no FP32 mode")
            if lo != hi:
                raise InputError(
                    f"--dla with --batch {lo},{opt},{hi}: the DLA runs fixed shapes only (min = opt = max)",
                    f"pass one batch size, e.g. --batch {opt}",
                )
        elif self.dla_gpu_fallback:
            raise InputError("--dla-gpu-fallback needs --dla CORE", "add --dla 0, or drop --dla-gpu-fallback")
        check_ranges(("--workspace", WORKSPACE_MIB, self.workspace_mib), ("--topk", TOPK, self.topk),
                     ("--dla", DLA_CORE, self.dla_core))
        for lib in self.plugins:  # fail before the long steps, not after them
            if not Path(lib).expanduser().is_file():
                raise InputError(f"plugin library {lib} not found", "check the --plugin path (a .so file)")

    def record(self) -> dict[str, Any]:
        """The options as the sidecar's ``build`` entries: JSON values, ``post`` flattened into
        ``nms_conf``, ``nms_iou`` and ``max_det`` (the keys the sidecar has always had)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in _NOT_RECORDED:
                continue
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Path) else value
            if name == "nms":  # the settings of --nms efficient, under their flag names
                out.update(nms_conf=self.post.conf, nms_iou=self.post.iou, max_det=self.post.max_det)
        out.update(batch=list(self.batch), plugins=[str(p) for p in self.plugins])
        return out


@dataclass(frozen=True)
class VerifyOptions:
    """``--verify IMAGES`` (:mod:`.verify`): a folder of images (or one image), optional COCO
    ``annotations`` for them (then AP too), the AP budget (``max_ap_drop``: over it is an error,
    exit 3; None: a warning over the quantization gate's 0.3 AP), at most ``max_images`` images."""

    images: Path
    annotations: Path | None = None
    max_ap_drop: float | None = None
    max_images: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", Path(os.fspath(self.images)))
        if self.annotations is not None:
            object.__setattr__(self, "annotations", Path(os.fspath(self.annotations)))
        check_ranges(("--max-ap-drop", AP_DIFFERENCE, self.max_ap_drop), ("--verify-max-images", COUNT, self.max_images))
        if not self.images.exists():
            raise InputError(f"--verify {self.images}: no such folder or image", "pass a folder of images")
        if self.annotations is not None and not self.annotations.is_file():
            raise InputError(f"--verify-annotations {self.annotations}: no such file", "pass a COCO instances JSON")
        if self.max_ap_drop is not None and self.annotations is None:
            raise InputError("--max-ap-drop with --verify needs --verify-annotations (AP needs ground truth)")

    @property
    def budget(self) -> float:
        from ..quantize.options import AP_BUDGET

        return AP_BUDGET if self.max_ap_drop is None else float(self.max_ap_drop)


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


def graph_nms(conf: float, iou: float, max_det: int) -> PostprocessConfig:
    """The ``--nms efficient`` settings (``--nms-conf``, ``--nms-iou``, ``--max-det``) as a
    :class:`PostprocessConfig`; a bad value raises :class:`InputError` naming build's flag."""
    try:
        return PostprocessConfig(conf=conf, iou=iou, max_det=max_det)
    except InputError as err:  # core.config names --conf / --iou, the flags of infer, eval, ...

        def rename(text: str) -> str:
            return text.replace("--conf", "--nms-conf").replace("--iou", "--nms-iou")

        raise InputError(rename(err.message), rename(err.hint) if err.hint else None) from None
