"""INT8: calibration sets (:mod:`.calibset`), the calibration reader (:mod:`.reader`), Q/DQ
placement (:mod:`.placement`), quantize + cache + provenance (:mod:`.calibrate`), per-layer
sensitivity (:mod:`.sensitivity`) and the accuracy gate (:mod:`.gate`). Imports point down that list.
"""

from .calibrate import check_quantized, is_qdq_onnx, quantize_onnx, read_quant_provenance
from .calibset import CalibSet, make_calib_set, read_calib_set
from .gate import AccuracyDropError, AccuracyReport, accuracy_check

__all__ = [
    "AccuracyDropError",
    "AccuracyReport",
    "CalibSet",
    "accuracy_check",
    "check_quantized",
    "is_qdq_onnx",
    "make_calib_set",
    "quantize_onnx",
    "read_calib_set",
    "read_quant_provenance",
]
