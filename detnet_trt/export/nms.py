"""In-graph NMS (``nms="onnx"``): the standard ONNX ``NonMaxSuppression`` appended after the
per-image top-K, class-aware through per-class coordinate offsets, padded to ``max_det`` rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.config import PostprocessConfig
from ..core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS


class _Nodes:
    """The nodes appended to the graph, in order; every name starts with ``nms/``."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def __call__(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any) -> list[str]:
        """A node with outputs named after it (``nms/<name>``, ``_0``, ``_1``... when several)."""
        outs = [f"nms/{name}" + (f"_{i}" if n_out > 1 else "") for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=f"nms/{name}", **attrs))
        return outs

    def final(self, op: str, inputs: list[str], output: str, name: str, **attrs: Any) -> None:
        """A node writing the graph output ``output``."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"nms/{name}", **attrs))


def _constants(post: PostprocessConfig) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.array(v, dtype=dt), name=f"nms/{n}")
        for n, v, dt in [
            ("axes12", [1, 2], np.int64),
            ("axis1", [1], np.int64),
            ("axis2", [2], np.int64),
            ("zero", 0.0, np.float32),
            ("one", 1.0, np.float32),
            ("half_neg", -0.5, np.float32),
            ("max_det", [post.max_det], np.int64),
            ("iou", [post.iou], np.float32),
            ("conf", [post.conf], np.float32),
            ("cols_bk", [0, 2], np.int64),
            ("expand4", [1, 1, 4], np.int64),
        ]
    ]


def _class_offset_boxes(node: _Nodes, opset: int, boxes: str, cls: str) -> str:
    """``boxes + class_id * span`` (N x K x 4), ``span`` the extent of the image's boxes plus one."""
    if opset >= 18:  # ReduceMax/Min take axes as an input from opset 18 on
        (bmax,) = node("ReduceMax", [boxes, "nms/axes12"], "bmax", keepdims=1)  # N x 1 x 1
        (bmin,) = node("ReduceMin", [boxes, "nms/axes12"], "bmin", keepdims=1)
    else:
        (bmax,) = node("ReduceMax", [boxes], "bmax", axes=[1, 2], keepdims=1)  # N x 1 x 1
        (bmin,) = node("ReduceMin", [boxes], "bmin", axes=[1, 2], keepdims=1)
    (bmin0,) = node("Min", [bmin, "nms/zero"], "bmin0")
    (extent,) = node("Sub", [bmax, bmin0], "extent")
    (span,) = node("Add", [extent, "nms/one"], "span")
    (cls_f,) = node("Cast", [cls], "cls_f", to=TensorProto.FLOAT)
    (cls_f3,) = node("Unsqueeze", [cls_f, "nms/axis2"], "cls_f3")  # N x K x 1
    (offset,) = node("Mul", [cls_f3, span], "offset")
    (shifted,) = node("Add", [boxes, offset], "shifted")  # N x K x 4
    return shifted


def _kept_scores(node: _Nodes, shifted: str, scores: str) -> str:
    """One NonMaxSuppression over a single class; its ``[S, 3]`` selection scattered into an
    ``N x K`` score map, -1 where not kept."""
    (scores3,) = node("Unsqueeze", [scores, "nms/axis1"], "scores3")  # N x 1 x K
    (selected,) = node("NonMaxSuppression", [shifted, scores3, "nms/max_det", "nms/iou", "nms/conf"], "select")
    (bk,) = node("Gather", [selected, "nms/cols_bk"], "batch_box", axis=1)  # S x 2 (image, candidate)
    (kept_scores,) = node("GatherND", [scores, bk], "kept_scores")  # S
    (shape,) = node("Shape", [scores], "shape")
    (minus_one,) = node(
        "ConstantOfShape", [shape], "minus_one", value=numpy_helper.from_array(np.array([-1.0], np.float32))
    )
    (kept,) = node("ScatterND", [minus_one, bk, kept_scores], "kept")  # N x K, -1 where dropped
    return kept


def _padded_detections(node: _Nodes, kept: str, boxes: str, cls: str) -> None:
    """A constant-K TopK of the kept scores: the graph outputs, ``N x max_det``, zero past ``num_dets``."""
    k_vals, k_idx = node("TopK", [kept, "nms/max_det"], "topk", n_out=2, axis=1, largest=1, sorted=1)
    (valid,) = node("Greater", [k_vals, "nms/half_neg"], "valid")  # N x D
    (valid_i,) = node("Cast", [valid], "valid_i", to=TensorProto.INT32)
    (valid_f,) = node("Cast", [valid], "valid_f", to=TensorProto.FLOAT)
    (count,) = node("ReduceSum", [valid_f, "nms/axis1"], "count", keepdims=0)
    node.final("Cast", [count], GRAPH_NMS_OUTPUTS[3], "num_dets", to=TensorProto.INT32)
    node.final("Mul", [k_vals, valid_f], GRAPH_NMS_OUTPUTS[1], "det_scores")
    (idx3,) = node("Unsqueeze", [k_idx, "nms/axis2"], "idx3")
    (idx4,) = node("Expand", [idx3, "nms/expand4"], "idx4")  # N x D x 4
    (gboxes,) = node("GatherElements", [boxes, idx4], "gboxes", axis=1)
    (valid_f3,) = node("Unsqueeze", [valid_f, "nms/axis2"], "valid_f3")
    node.final("Mul", [gboxes, valid_f3], GRAPH_NMS_OUTPUTS[0], "det_boxes")
    (gcls,) = node("GatherElements", [cls, k_idx], "gcls", axis=1)
    node.final("Mul", [gcls, valid_i], GRAPH_NMS_OUTPUTS[2], "det_class_ids")


def _append_nms(proto: onnx.ModelProto, post: PostprocessConfig) -> None:
    """Replace the top-K outputs by in-graph class-aware NMS padded to ``post.max_det`` rows.

    Class-aware through coordinate offsets: ``boxes + class_id * span`` with ``span`` the extent of
    the image's boxes plus one, so boxes of different classes never overlap (the host's
    ``batched_nms`` does the same), and one NonMaxSuppression over a single class (score
    threshold ``post.conf``, IoU ``post.iou``). Its ``[S, 3]`` selection (the only data-dependent
    shape) is scattered into an ``N x K`` score map (-1 where not kept) and a constant-K TopK pads
    the result to ``N x max_det``.
    """
    g = proto.graph
    boxes, scores, cls = HOST_NMS_OUTPUTS
    node = _Nodes()
    opset = {o.domain: o.version for o in proto.opset_import}[""]
    shifted = _class_offset_boxes(node, opset, boxes, cls)
    kept = _kept_scores(node, shifted, scores)
    _padded_detections(node, kept, boxes, cls)

    g.node.extend(node.nodes)
    used = {i for n in node.nodes for i in n.input}
    g.initializer.extend(t for t in _constants(post) if t.name in used)
    del g.output[:]
    f, i32, d = TensorProto.FLOAT, TensorProto.INT32, post.max_det
    g.output.extend(
        [
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[0], f, ["N", d, 4]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[1], f, ["N", d]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[2], i32, ["N", d]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[3], i32, ["N"]),
        ]
    )
