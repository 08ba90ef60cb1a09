"""The engine-inspector summary (precision / device per layer) and which network layers a build
pins to FP32. The inspector text here is written in the format NVIDIA documents for
``get_engine_information(LayerInformationFormat.JSON)`` with detailed profiling verbosity (the
TensorRT developer guide's engine-inspector examples): it tests our reading of that format, not
TensorRT; the ``gpu`` tests read a real engine's."""

from __future__ import annotations

import json
from types import SimpleNamespace

import onnx
import pytest

from detnet_trt.build.layers import (
    data_type,
    fp32_picker,
    matches_node,
    parse_engine_information,
    summarize,
    summary_line,
)


def _tensor(name: str, fmt: str) -> dict:
    return {"Name": name, "Dimensions": [1, 16, 40, 40], "Format/Datatype": fmt}


def _layer(name: str, kind: str, fmt_in: str | None, fmt_out: str, tactic: str = "0x0") -> dict:
    return {"Name": name, "LayerType": kind, "Inputs": [_tensor("in", fmt_in)] if fmt_in else [],
            "Outputs": [_tensor("out", fmt_out)], "TacticValue": tactic}


ENGINE = json.dumps({"Layers": [
    _layer("Reformatting CopyNode for Input Tensor 0 to conv1", "Reformat", "Row major linear FP32",
           "Thirty-two wide channel vectorized row major Int8 format"),
    _layer("conv1 + relu1", "CaskConvolution", "Thirty-two wide channel vectorized row major Int8 format",
           "Thirty-two wide channel vectorized row major Int8 format", "0x1a2b"),
    _layer("conv2 + add", "CaskConvolution", "Channel major INT8 format where channel % 16 == 0",
           "Channel major FP16 format where channel % 8 == 0"),
    _layer("head/cls", "CaskConvolution", "Channel major FP16 format where channel % 8 == 0",
           "Row major linear FP16 format"),
    _layer("PWN(sigmoid, decode)", "PointWiseV2", "Row major linear FP32", "Row major linear FP32"),
    _layer("topk", "TopK", "Row major linear FP32", "Row major linear Int32"),
    _layer("const", "Constant", None, "Row major linear FP32"),
], "Bindings": ["images", "boxes", "scores", "class_ids"]})


def test_precision_and_device_per_layer() -> None:
    layers = parse_engine_information(ENGINE)
    assert [x.precision for x in layers] == ["FP32", "INT8", "INT8", "FP16", "FP32", "FP32", "FP32"]
    assert {x.device for x in layers} == {"GPU"}
    assert layers[1].type == "CaskConvolution" and layers[1].tactic == "0x1a2b"
    s = summarize(layers)
    assert s == {"precision": {"FP16": 1, "FP32": 4, "INT8": 2}, "device": {"GPU": 7}}
    assert summary_line(s) == "7 layers: FP32 4, INT8 2, FP16 1; GPU 7"


def test_dla_layers_are_counted_on_the_dla() -> None:
    text = json.dumps({"Layers": [
        _layer("{ForeignNode[conv1...relu5]}", "DLA", "Channel major FP16 format where channel % 16 == 0",
               "Channel major FP16 format where channel % 16 == 0"),
        _layer("{ForeignNode[conv6...add]}", "Myelin", "Row major linear FP16 format", "Row major linear FP16 format"),
        _layer("topk", "TopK", "Row major linear FP32", "Row major linear Int32"),
    ]})
    assert [x.device for x in parse_engine_information(text)] == ["DLA", "GPU", "GPU"]
    # in a build that asked for a DLA core, a foreign node is the DLA's subgraph
    assert summarize(parse_engine_information(text, dla=True))["device"] == {"DLA": 2, "GPU": 1}


@pytest.mark.parametrize(("fmt", "want"), [
    ("Row major linear FP32", "FP32"), ("Row major linear FP16 format", "FP16"), ("Half", "FP16"),
    ("Float", "FP32"), ("Row major linear Int32", "INT32"), ("Row major linear UInt8 format", "UINT8"),
    ("Four wide channel vectorized row major Int8 format", "INT8"), ("Unknown format", ""),
])
def test_data_type(fmt, want) -> None:
    assert data_type(fmt) == want


@pytest.mark.parametrize("text", ['"conv1 + relu1"', '{"Layers": ["conv1 + relu1", "conv2"]}', "{}"])
def test_engine_without_detailed_verbosity_is_an_error(text) -> None:
    with pytest.raises(ValueError, match="ProfilingVerbosity.DETAILED"):
        parse_engine_information(text)


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
