"""The exported graph's contract check: TensorRT 8.6's ONNX operator table, opset, data-dependent
shapes and the I/O tensors the rest of the package expects (:func:`check_graph`).
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import onnx
from onnx import TensorProto, helper

from ..core.errors import DetnetError
from ..core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS, INPUT_NAME, ModelMeta

TRT86_MAX_OPSET = 17


TRT_MAX_TOPK = 3840  # TensorRT's TopK layer: K <= 3840


# Ops whose output shape depends on input *values* (not only on input shapes).
DATA_DEPENDENT_OPS = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress", "Loop", "Scan", "If"})


class ExportCheckError(DetnetError):
    """An exported graph breaks the ONNX contract (op unsupported by TensorRT 8.6, dynamic shape, ...)."""


def trt86_supported_ops() -> frozenset[str]:
    """Operators of TensorRT 8.6's ONNX parser (``detnet_trt/data/trt86_onnx_ops.txt``)."""
    text = resources.files("detnet_trt.export").joinpath("trt86_onnx_ops.txt").read_text(encoding="utf-8")
    return frozenset(line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip())


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def check_graph(model: onnx.ModelProto, meta: ModelMeta | None = None) -> list[str]:
    """Problems of ``model`` against the export contract; an empty list means it passes.

    Checks: default-domain ops only, opset <= 17 and every op in TensorRT 8.6's list; TopK's K
    and the ``axes`` inputs TensorRT needs constant are constants; no data-dependent op
    (NonMaxSuppression allowed only in an in-graph-NMS graph); the uint8 input feeds only Cast
    nodes (TensorRT 8.6 has no other op on uint8 tensors); with ``meta``, the input and output
    names, dtypes and shapes (only N symbolic).
    """
    problems: list[str] = []
    graph = model.graph
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if "ai.onnx" not in opsets:
        problems.append("no default-domain opset import")
    elif opsets["ai.onnx"] > TRT86_MAX_OPSET:
        problems.append(f"opset {opsets['ai.onnx']} > {TRT86_MAX_OPSET}, the newest TensorRT 8.6 parses")
    supported = trt86_supported_ops()
    consts = _constant_names(graph)
    allow_nms = meta is not None and meta.nms == "onnx"
    for node in graph.node:
        where = f"{node.op_type} node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r}")
            continue
        if node.op_type not in supported:
            problems.append(f"{where}: not supported by TensorRT 8.6's ONNX parser")
        if node.op_type in DATA_DEPENDENT_OPS and not (node.op_type == "NonMaxSuppression" and allow_nms):
            problems.append(f"{where}: output shape depends on data")
        if node.op_type == "TopK" and (len(node.input) < 2 or node.input[1] not in consts):
            problems.append(f"{where}: K is not a constant")
        if node.op_type in ("Slice", "Squeeze", "Unsqueeze", "ReduceSum") and len(node.input) > 1:
            axes_at = {"Slice": 3}.get(node.op_type, 1)
            if len(node.input) > axes_at and node.input[axes_at] and node.input[axes_at] not in consts:
                problems.append(f"{where}: axes are not a constant")
        if node.op_type == "Resize":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            mode = attrs.get("mode", b"nearest").decode()
            ctm = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            if mode not in ("nearest", "linear") or ctm == "tf_crop_and_resize":
                problems.append(f"{where}: Resize mode {mode!r} / {ctm!r} unsupported by TensorRT 8.6")
    uint8_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.UINT8}
    for node in graph.node:
        if node.op_type != "Cast" and uint8_inputs & set(node.input):
            problems.append(
                f"{node.op_type} node {node.name or node.output[0]!r} reads the uint8 input: TensorRT 8.6 "
                "lets a uint8 input feed only a Cast"
            )
    if meta is not None:
        problems += _check_io(graph, meta)
    return problems


def _dims(vi: onnx.ValueInfoProto) -> list[Any]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]


def _check_io(graph: onnx.GraphProto, meta: ModelMeta) -> list[str]:
    problems = []
    inputs = [i for i in graph.input if i.name not in {x.name for x in graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected [{INPUT_NAME!r}]")
    else:
        vi = inputs[0]
        if vi.type.tensor_type.elem_type != TensorProto.UINT8:
            problems.append(f"input {INPUT_NAME!r} is not uint8")
        want = list(meta.input_shape(1))[1:]
        dims = _dims(vi)
        if dims[1:] != want or isinstance(dims[0], int):
            problems.append(f"input {INPUT_NAME!r} has shape {dims}, expected [N, {', '.join(map(str, want))}]")
    outs = {o.name: o for o in graph.output}
    if list(outs) != list(meta.output_names):
        problems.append(f"outputs are {list(outs)}, expected {list(meta.output_names)}")
        return problems
    k = meta.topk if meta.nms == "host" else meta.max_det
    want_out = {
        HOST_NMS_OUTPUTS[0]: ([k, 4], TensorProto.FLOAT),
        HOST_NMS_OUTPUTS[1]: ([k], TensorProto.FLOAT),
        HOST_NMS_OUTPUTS[2]: ([k], TensorProto.INT32),
        GRAPH_NMS_OUTPUTS[0]: ([k, 4], TensorProto.FLOAT),
        GRAPH_NMS_OUTPUTS[1]: ([k], TensorProto.FLOAT),
        GRAPH_NMS_OUTPUTS[2]: ([k], TensorProto.INT32),
        GRAPH_NMS_OUTPUTS[3]: ([], TensorProto.INT32),
    }
    for name, vi in outs.items():
        shape, dtype = want_out[name]
        dims = _dims(vi)
        if not dims or dims[1:] != shape or isinstance(dims[0], int):
            problems.append(f"output {name!r} has shape {dims}, expected [N, {', '.join(map(str, shape))}]")
        if vi.type.tensor_type.elem_type != dtype:
            problems.append(f"output {name!r} has element type {vi.type.tensor_type.elem_type}, expected {dtype}")
    return problems


def graph_ops(path_or_model: str | os.PathLike[str] | onnx.ModelProto) -> list[str]:
    """Sorted distinct op types of an ONNX file or model (a helper for tests and reports)."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return sorted({n.op_type for n in model.graph.node})
