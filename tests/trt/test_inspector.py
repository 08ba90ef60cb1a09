"""Engine-inspector JSON -> per-layer type, precision, device, tactic (CPU; the JSON of the shapes
TensorRT documents, tests/inspector_fixtures.py). The inspector call itself is a gpu test."""

from __future__ import annotations

import json

import pytest
from inspector_fixtures import DETAILED, NAMES_ONLY, NONE, text

from detnet_trt.trt.inspector import InspectorError, format_layers, parse_engine_information, precision_of


@pytest.mark.parametrize(("fmt", "want"), [
    ("Row major linear FP32", "FP32"),
    ("Row major linear FP16 format", "FP16"),
    ("Channel major FP16 format where channel % 8 == 0", "FP16"),
    ("Thirty-two wide channel vectorized row major Int8 format", "INT8"),
    ("Four wide channel vectorized row major Int8 format", "INT8"),
    ("Row major linear UInt8 format", "UINT8"),  # not INT8
    ("Row major linear Int32", "INT32"),
    ("Row major linear BFloat16 format", "BF16"),  # not FP32 ("Float" inside the word)
    ("Half", "FP16"),
    ("Unknown format", ""),
    ("", ""),
])
def test_precision_of_format_descriptions(fmt: str, want: str) -> None:
    assert precision_of(fmt) == want


def test_detailed_engine() -> None:
    info = parse_engine_information(text(DETAILED))
    assert info.detailed and info.bindings == ["images", "boxes", "scores", "class_ids"]
    by_name = {layer.name: layer for layer in info.layers}
    conv = by_name["backbone.stem.conv + backbone.stem.relu"]
    assert (conv.type, conv.implementation, conv.precision, conv.device) == ("Convolution", "CaskConvolution", "INT8", "GPU")
    assert conv.tactic.startswith("sm87_xmma_fprop_implicit_gemm")  # the kernel name before the tactic value
    cast = by_name["Cast_0 + Sub_2 + Div_4"]
    assert (cast.precision, cast.output_precision, cast.tactic) == ("UINT8", "FP16", "0x0000000000000001")
    dla = by_name["{ForeignNode[backbone.stage2...fpn.p3]}"]
    assert (dla.device, dla.precision) == ("DLA", "FP16")
    assert by_name["p3 from nvm"].device == "GPU"  # the copy out of DLA memory runs on the GPU
    assert by_name["head.anchors"].precision == "FP32"  # no input: the output's precision
    decode = by_name["decode"]
    assert (decode.type, decode.precision, decode.tactic) == ("Myelin", "", "")  # unknown stays unknown
    assert info.counts("device") == {"GPU": 6, "DLA": 1}
    assert info.counts("precision") == {"FP16": 2, "FP32": 2, "UINT8": 1, "INT8": 1, "?": 1}
    d = info.to_dict()
    assert d["num_layers"] == 7 and d["counts"]["device"] == {"GPU": 6, "DLA": 1}
    assert json.loads(json.dumps(d)) == d  # JSON-ready
    table = format_layers(info)
    assert table.splitlines()[0].split() == ["#", "layer", "type", "precision", "device", "tactic"]
    assert "device: GPU 6, DLA 1" in table and "precision: FP16 2, FP32 2" in table


def test_names_only_engine_is_reported_as_such() -> None:
    info = parse_engine_information(text(NAMES_ONLY))
    assert not info.detailed and [layer.name for layer in info.layers][1] == "backbone.stem.conv + backbone.stem.relu"
    assert all(layer.type == layer.precision == layer.device == "" for layer in info.layers)
    assert info.to_dict()["counts"] == {}
    assert "device:" not in format_layers(info)


def test_engine_built_with_no_layer_information() -> None:
    info = parse_engine_information(text(NONE))
    assert info.layers == [] and not info.detailed
    assert "profiling verbosity NONE" in format_layers(info)


@pytest.mark.parametrize(("raw", "match"), [
    ("not json", "not JSON"),
    ("[1, 2]", "no 'Layers' list"),
    ('{"Layers": {"a": 1}}', "no 'Layers' list"),
    ('{"model": "detnet_tiny", "tensorrt_version": "10.3.0"}', "no 'Layers' list"),  # e.g. a sidecar
    ('{"Layers": [3]}', "layer 0 is a int"),
])
def test_unreadable_inspector_output(raw: str, match: str) -> None:
    with pytest.raises(InspectorError, match=match):
        parse_engine_information(raw)
