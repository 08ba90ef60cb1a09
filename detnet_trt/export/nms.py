"""In-graph NMS (``nms="onnx"``): the standard ONNX ``NonMaxSuppression`` appended after the
per-image top-K, class-aware through per-class coordinate offsets, padded to ``max_det`` rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS


def _append_nms(proto: onnx.ModelProto, *, max_det: int, conf: float, iou: float) -> None:
    """Replace the top-K outputs by in-graph class-aware NMS padded to ``max_det`` rows.

    Class-aware through coordinate offsets: ``boxes + class_id * span`` with ``span`` the extent of
    the image's boxes plus one, so boxes of different classes never overlap (the host's
    ``batched_nms`` does the same), and one NonMaxSuppression over a single class. Its
    ``[S, 3]`` selection (the only data-dependent shape) is scattered into an ``N x K`` score map
    (-1 where not kept) and a constant-K TopK pads the result to ``N x max_det``.
    """
    g = proto.graph
    boxes, scores, cls = HOST_NMS_OUTPUTS
    nodes: list[onnx.NodeProto] = []
    inits = [
        numpy_helper.from_array(np.array(v, dtype=dt), name=f"nms/{n}")
        for n, v, dt in [
            ("axes12", [1, 2], np.int64),
            ("axis1", [1], np.int64),
            ("axis2", [2], np.int64),
            ("zero", 0.0, np.float32),
            ("one", 1.0, np.float32),
            ("half_neg", -0.5, np.float32),
            ("max_det", [max_det], np.int64),
            ("iou", [iou], np.float32),
            ("conf", [conf], np.float32),
            ("cols_bk", [0, 2], np.int64),
            ("expand4", [1, 1, 4], np.int64),
        ]
    ]

    def node(op: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any) -> list[str]:
        outs = [f"nms/{name}" + (f"_{i}" if n_out > 1 else "") for i in range(n_out)]
        nodes.append(helper.make_node(op, inputs, outs, name=f"nms/{name}", **attrs))
        return outs

    opset = {o.domain: o.version for o in proto.opset_import}[""]
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
    (scores3,) = node("Unsqueeze", [scores, "nms/axis1"], "scores3")  # N x 1 x K
    (selected,) = node("NonMaxSuppression", [shifted, scores3, "nms/max_det", "nms/iou", "nms/conf"], "select")
    (bk,) = node("Gather", [selected, "nms/cols_bk"], "batch_box", axis=1)  # S x 2 (image, candidate)
    (kept_scores,) = node("GatherND", [scores, bk], "kept_scores")  # S
    (shape,) = node("Shape", [scores], "shape")
    (minus_one,) = node(
        "ConstantOfShape", [shape], "minus_one", value=numpy_helper.from_array(np.array([-1.0], np.float32))
    )
    (kept,) = node("ScatterND", [minus_one, bk, kept_scores], "kept")  # N x K, -1 where dropped
    k_vals, k_idx = node("TopK", [kept, "nms/max_det"], "topk", n_out=2, axis=1, largest=1, sorted=1)
    (valid,) = node("Greater", [k_vals, "nms/half_neg"], "valid")  # N x D
    (valid_i,) = node("Cast", [valid], "valid_i", to=TensorProto.INT32)
    (valid_f,) = node("Cast", [valid], "valid_f", to=TensorProto.FLOAT)
    (count,) = node("ReduceSum", [valid_f, "nms/axis1"], "count", keepdims=0)
    nodes.append(helper.make_node("Cast", [count], [GRAPH_NMS_OUTPUTS[3]], name="nms/num_dets", to=TensorProto.INT32))
    nodes.append(helper.make_node("Mul", [k_vals, valid_f], [GRAPH_NMS_OUTPUTS[1]], name="nms/det_scores"))
    (idx3,) = node("Unsqueeze", [k_idx, "nms/axis2"], "idx3")
    (idx4,) = node("Expand", [idx3, "nms/expand4"], "idx4")  # N x D x 4
    (gboxes,) = node("GatherElements", [boxes, idx4], "gboxes", axis=1)
    (valid_f3,) = node("Unsqueeze", [valid_f, "nms/axis2"], "valid_f3")
    nodes.append(helper.make_node("Mul", [gboxes, valid_f3], [GRAPH_NMS_OUTPUTS[0]], name="nms/det_boxes"))
    (gcls,) = node("GatherElements", [cls, k_idx], "gcls", axis=1)
    nodes.append(helper.make_node("Mul", [gcls, valid_i], [GRAPH_NMS_OUTPUTS[2]], name="nms/det_class_ids"))

    g.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    g.initializer.extend(t for t in inits if t.name in used)
    del g.output[:]
    f, i32 = TensorProto.FLOAT, TensorProto.INT32
    g.output.extend(
        [
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[0], f, ["N", max_det, 4]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[1], f, ["N", max_det]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[2], i32, ["N", max_det]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[3], i32, ["N"]),
        ]
    )
