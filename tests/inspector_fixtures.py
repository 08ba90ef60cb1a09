"""Engine-inspector JSON of the shapes TensorRT documents (``IEngineInspector``,
``LayerInformationFormat.JSON``), written here for the tests: a detailed INT8 engine with a DLA
subgraph, a names-only engine (the default profiling verbosity) and one built with NONE.
Field names and value forms follow NVIDIA's engine-inspector documentation and what
trt-engine-explorer reads; the layers and kernels are made up."""

from __future__ import annotations

import json


def _t(name: str, dims: list[int], fmt: str) -> dict:
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


DETAILED = {
    "Layers": [
        {"Name": "Cast_0 + Sub_2 + Div_4", "LayerType": "PointWiseV2", "ParameterType": "PointWise",
         "Inputs": [_t("images", [4, 3, 128, 128], "Row major linear UInt8 format")],
         "Outputs": [_t("norm", [4, 3, 128, 128], "Row major linear FP16 format")],
         "TacticValue": "0x0000000000000001", "StreamId": 0, "Metadata": "[ONNX Layer: Cast_0]\x1e[ONNX Layer: Sub_2]"},
        {"Name": "backbone.stem.conv + backbone.stem.relu", "LayerType": "CaskConvolution",
         "ParameterType": "Convolution", "Kernel": [3, 3], "Stride": [2, 2],
         "Inputs": [_t("q0", [4, 3, 128, 128], "Thirty-two wide channel vectorized row major Int8 format")],
         "Outputs": [_t("c0", [4, 16, 64, 64], "Thirty-two wide channel vectorized row major Int8 format")],
         "Weights": {"Type": "Int8", "Count": 432}, "Bias": {"Type": "Float", "Count": 16}, "Activation": "RELU",
         "TacticName": "sm87_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32",
         "TacticValue": "0x8f2a1c3d4e5f6071", "StreamId": 0},
        {"Name": "{ForeignNode[backbone.stage2...fpn.p3]}", "LayerType": "DLA", "ParameterType": "DLA",
         "Inputs": [_t("c0", [4, 16, 64, 64], "Channel major FP16 format where channel % 16 == 0")],
         "Outputs": [_t("p3", [4, 32, 16, 16], "Channel major FP16 format where channel % 16 == 0")],
         "TacticValue": "0x0000000000000003"},
        {"Name": "p3 from nvm", "LayerType": "Reformat", "ParameterType": "Reformat", "Origin": "REFORMAT",
         "Inputs": [_t("p3", [4, 32, 16, 16], "Channel major FP16 format where channel % 16 == 0")],
         "Outputs": [_t("p3_gpu", [4, 32, 16, 16], "Row major linear FP16 format")],
         "TacticValue": "0x00000000000003e8"},
        {"Name": "head.topk", "LayerType": "TopK", "ParameterType": "TopK",
         "Inputs": [_t("scores_all", [4, 1344], "Row major linear FP32")],
         "Outputs": [_t("scores", [4, 100], "Row major linear FP32"), _t("idx", [4, 100], "Row major linear Int32")],
         "TacticValue": "0x0000000000000000"},
        {"Name": "head.anchors", "LayerType": "Constant", "ParameterType": "Constant", "Inputs": [],
         "Outputs": [_t("anchors", [1344, 2], "Row major linear FP32")]},
        {"Name": "decode", "LayerType": "Myelin", "Inputs": [_t("x", [4, 1344, 4], "Unknown format")],
         "Outputs": [], "TacticName": ""},
    ],
    "Bindings": ["images", "boxes", "scores", "class_ids"],
}

NAMES_ONLY = {
    "Layers": ["Cast_0 + Sub_2 + Div_4", "backbone.stem.conv + backbone.stem.relu", "head.topk"],
    "Bindings": ["images", "boxes", "scores", "class_ids"],
}

NONE = {"Layers": [], "Bindings": ["images", "boxes", "scores", "class_ids"]}


def text(obj: dict) -> str:
    return json.dumps(obj)
