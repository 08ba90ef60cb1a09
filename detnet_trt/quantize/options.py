"""The options objects of the INT8 stage, each validated where it is made:

- :class:`QuantizeOptions`: how :func:`~detnet_trt.quantize.calibrate.quantize_onnx` calibrates
  and places Q/DQ (``detnet-trt quantize --method --percentile --keep-float --quantize-head
  --calib-cache``; ``build --calib-method``);
- :class:`AccuracyCheckOptions`: what :func:`~detnet_trt.quantize.gate.accuracy_check` measures and
  allows (``detnet-trt quantize --split --val-max-images --max-ap-drop``).

A bad value raises :class:`~detnet_trt.core.errors.InputError` naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from ..core.limits import AP_DIFFERENCE, BATCH, COUNT, COUNT_OR_ZERO, check_ranges

METHODS = ("entropy", "minmax", "percentile")
DEFAULT_PERCENTILE = 99.999
AP_BUDGET = 0.3  # AP points (0-100 scale); NVIDIA's and mmdeploy's published INT8 detector losses: 0.2-0.3


@dataclass(frozen=True)
class QuantizeOptions:
    """How the FP32 ONNX is calibrated and which nodes stay float (recorded in the provenance)."""

    method: str = "entropy"  # activation range calibration: one of METHODS
    percentile: float = DEFAULT_PERCENTILE  # used by method "percentile" only
    keep_float: tuple[str, ...] = ()  # node-name globs ("re:" prefix: a regular expression) kept float
    keep_head_float: bool = True  # the head's final score/box convolutions stay float (dense detector only)
    calib_cache: Path | None = None  # JSON tensor ranges: written, and reused only when they match
    batch: int = 1  # calibration images per ONNX Runtime run
    min_images: int = 1  # fewer readable calibration images is an error (on top of the set's own minimum)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if self.calib_cache is not None:
            object.__setattr__(self, "calib_cache", Path(os.fspath(self.calib_cache)))
        if self.method not in METHODS:
            raise InputError(f"--method {self.method!r}: unknown calibration method",
                             f"use one of {', '.join(METHODS)}")
        if not 0.0 < self.percentile <= 100.0:
            raise InputError(f"--percentile {self.percentile}: expected a percentile in (0, 100]", "e.g. 99.999")
        if self.batch < 1:
            raise InputError(f"calibration batch {self.batch} must be at least 1")
        if self.min_images < 0:
            raise InputError(f"min_images {self.min_images} must be 0 or more")
        check_ranges(("calibration batch", BATCH, self.batch), ("min_images", COUNT_OR_ZERO, self.min_images))


@dataclass(frozen=True)
class AccuracyCheckOptions:
    """The FP32-vs-INT8 COCO AP comparison: which images, the budget, the failure threshold and
    the search for layers to keep in float when over budget."""

    split: str = "val"  # split of the COCO-layout folder
    max_images: int | None = None  # evaluate only the first N images (None: all)
    budget: float = AP_BUDGET  # AP drop (0-100 scale) over which the sensitive layers are searched
    max_ap_drop: float | None = None  # a larger drop raises AccuracyDropError (None: never)
    sensitivity_images: int = 4  # calibration images the per-layer errors are measured on
    fix_steps: tuple[int, ...] = (1, 3, 6)  # re-quantize with the top k layers kept float, k in turn

    def __post_init__(self) -> None:
        object.__setattr__(self, "fix_steps", tuple(int(k) for k in self.fix_steps))
        if not self.split:
            raise InputError("--split is empty", "name a split of the dataset, e.g. val")
        if self.max_images is not None and self.max_images < 1:
            raise InputError(f"--val-max-images {self.max_images}: expected at least 1 image")
        if self.sensitivity_images < 1:
            raise InputError(f"sensitivity_images {self.sensitivity_images} must be at least 1")
        if not self.fix_steps or min(self.fix_steps) < 1:
            raise InputError(f"fix_steps {self.fix_steps}: expected layer counts of at least 1")
        check_ranges(("--val-max-images", COUNT, self.max_images), ("--max-ap-drop", AP_DIFFERENCE, self.max_ap_drop))


__all__ = ["AP_BUDGET", "DEFAULT_PERCENTILE", "METHODS", "AccuracyCheckOptions", "QuantizeOptions"]
