"""Checkpoint -> ONNX: the export (:mod:`.onnx`), the graph contract check and TensorRT op table
(:mod:`.check`), in-graph NMS (:mod:`.nms`) and EfficientNMS graph surgery (:mod:`.efficient_nms`).
"""

from .check import ExportCheckError, check_graph, graph_ops
from .onnx import compare_outputs, export_onnx

__all__ = ["ExportCheckError", "check_graph", "compare_outputs", "export_onnx", "graph_ops"]
