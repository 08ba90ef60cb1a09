"""INT8: the options objects (:mod:`.options`), calibration sets (:mod:`.calibset`), the
calibration reader (:mod:`.reader`), Q/DQ placement (:mod:`.placement`), quantize + cache +
provenance (:mod:`.calibrate`), per-layer sensitivity (:mod:`.sensitivity`) and the accuracy gate
(:mod:`.gate`). Imports point down that list.

The names below are re-exported lazily (PEP 562), so that importing :mod:`.options` (the CLI
does, to declare its flags) loads neither NumPy nor ONNX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

# public name -> module (in this package) that defines it
_EXPORTS = {
    "AccuracyCheckOptions": ".options",
    "QuantizeOptions": ".options",
    "CalibSet": ".calibset",
    "make_calib_set": ".calibset",
    "read_calib_set": ".calibset",
    "check_quantized": ".calibrate",
    "is_qdq_onnx": ".calibrate",
    "quantize_onnx": ".calibrate",
    "read_quant_provenance": ".calibrate",
    "AccuracyDropError": ".gate",
    "AccuracyReport": ".gate",
    "accuracy_check": ".gate",
}

__all__ = [  # = sorted(_EXPORTS)
    "AccuracyCheckOptions",
    "AccuracyDropError",
    "AccuracyReport",
    "CalibSet",
    "QuantizeOptions",
    "accuracy_check",
    "check_quantized",
    "is_qdq_onnx",
    "make_calib_set",
    "quantize_onnx",
    "read_calib_set",
    "read_quant_provenance",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from .calibrate import check_quantized, is_qdq_onnx, quantize_onnx, read_quant_provenance
    from .calibset import CalibSet, make_calib_set, read_calib_set
    from .gate import AccuracyDropError, AccuracyReport, accuracy_check
    from .options import AccuracyCheckOptions, QuantizeOptions
