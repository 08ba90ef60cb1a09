"""Which network layers a build pins to FP32, and the build's summary line of the engine
inspector's counts (the inspector's JSON itself is read by ``detnet_trt.trt.inspector``, tested in
``tests/trt``; the ``gpu`` tests read a real engine's)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import onnx

from detnet_trt.build.layers import fp32_picker, matches_node, summary, summary_line
from detnet_trt.trt.inspector import parse_engine_information


def _layer(name: str, kind: str, fmt: str) -> dict:
    t = {"Name": "t", "Dimensions": [1, 8, 4, 4], "Format/Datatype": fmt}
    return {"Name": name, "LayerType": kind, "Inputs": [t], "Outputs": [t]}


def test_summary_counts_precision_and_device() -> None:
    text = json.dumps({"Layers": [
        _layer("conv1 + relu1", "CaskConvolution", "Thirty-two wide channel vectorized row major Int8 format"),
        _layer("conv2 + add", "CaskConvolution", "Channel major INT8 format where channel % 16 == 0"),
        _layer("head/cls", "CaskConvolution", "Channel major FP16 format where channel % 8 == 0"),
        _layer("{ForeignNode[c3...c9]}", "DLA", "Channel major FP16 format where channel % 16 == 0"),
        _layer("topk", "TopK", "Row major linear FP32"),
    ]})
    counts = summary(parse_engine_information(text))
    assert counts == {"precision": {"INT8": 2, "FP16": 2, "FP32": 1}, "device": {"GPU": 4, "DLA": 1}}
    assert summary_line(counts) == "5 layers: INT8 2, FP16 2, FP32 1; GPU 4, DLA 1"


def test_matches_node() -> None:
    names, tensors = {"node_TopK_5", "node_sigmoid"}, {"topk_values"}
    assert matches_node("node_TopK_5", [], names, tensors)
    assert matches_node("node_sigmoid_3", [], names, tensors)  # a helper layer of the node (unique suffix)
    assert matches_node("(Unnamed Layer* 12) [Shuffle]", ["topk_values"], names, tensors)
    assert not matches_node("node_Conv_7", ["conv_out"], names, tensors)


def test_fp32_picker_selects_the_decode_layers_of_the_real_export(tiny_onnx) -> None:
    """Stand-in layers named as TensorRT's ONNX parser names them (after the node; outputs after
    the node's outputs): the decode and top-k are picked, no convolution is."""
    from detnet_trt.build.fp16 import fp32_nodes

    model = onnx.load(str(tiny_onnx))
    keep = set(fp32_nodes(model))
    pick = fp32_picker(tiny_onnx)

    def layer(node: onnx.NodeProto) -> SimpleNamespace:
        outs = [SimpleNamespace(name=t) for t in node.output]
        return SimpleNamespace(name=node.name, num_outputs=len(outs), get_output=lambda i: outs[i])

    picked = {n.name for n in model.graph.node if pick(layer(n))}
    assert picked == keep
    assert any(n.op_type == "TopK" and n.name in picked for n in model.graph.node)
    assert not any(n.op_type == "Conv" and n.name in picked for n in model.graph.node)
