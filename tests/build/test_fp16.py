"""FP16-typed ONNX (what FP16 means on TensorRT 11): types, interface kept, and ONNX Runtime CPU
agreement with the FP32 graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from detnet_trt.build.fp16 import convert_to_fp16, is_fp16_onnx
from detnet_trt.core.errors import OutputExistsError
from detnet_trt.core.meta import HOST_NMS_OUTPUTS


@pytest.fixture(scope="module")
def fp16_onnx(tiny_onnx, tmp_path_factory):
    return convert_to_fp16(tiny_onnx, tmp_path_factory.mktemp("fp16") / "tiny.fp16.onnx")


def test_weights_are_fp16_and_io_is_kept(tiny_onnx, fp16_onnx) -> None:
    assert is_fp16_onnx(fp16_onnx) and not is_fp16_onnx(tiny_onnx)
    model = onnx.load(str(fp16_onnx))
    onnx.checker.check_model(model)  # also: nodes topologically sorted
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    T = onnx.TensorProto
    assert io == {"images": T.UINT8, "boxes": T.FLOAT, "scores": T.FLOAT, "class_ids": T.INT32}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    inits = {t.name: t.data_type for t in model.graph.initializer}
    assert convs and all(inits[n.input[1]] == T.FLOAT16 for n in convs)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["detnet_trt.precision"] == '"fp16"'


def test_runs_in_onnxruntime_close_to_fp32(tiny_onnx, fp16_onnx) -> None:
    import onnxruntime as ort

    from detnet_trt.export.onnx import compare_outputs, untied

    x = np.random.default_rng(1).integers(0, 256, (2, 3, 128, 128), dtype=np.uint8)
    runs = []
    for path in (tiny_onnx, fp16_onnx):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs.append(dict(zip(HOST_NMS_OUTPUTS, sess.run(list(HOST_NMS_OUTPUTS), {"images": x}))))
    want, got = runs
    assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
    rtol = 5e-3  # FP16 activations: ~3 significant digits
    assert untied(want["scores"], rtol).sum() >= 5  # enough unambiguous ranks to compare boxes and classes
    assert compare_outputs(got, want, (128, 128), rtol=rtol) == []


def test_existing_output_needs_force(tiny_onnx, fp16_onnx) -> None:
    with pytest.raises(OutputExistsError):
        convert_to_fp16(tiny_onnx, fp16_onnx)


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({i.name: i.data_type for i in graph.initializer})
    return types


def test_decode_and_topk_stay_float32(tiny_onnx, fp16_onnx) -> None:
    """Everything after the head's final convolutions (sigmoid, box decode, top-k) stays FP32."""
    from detnet_trt.build.fp16 import fp32_nodes

    src = onnx.load(str(tiny_onnx))
    keep = set(fp32_nodes(src))
    ops = {n.op_type for n in src.graph.node if n.name in keep}
    assert {"TopK", "Sigmoid"} <= ops and not ops & {"Conv", "QuantizeLinear", "DequantizeLinear"}
    model = onnx.load(str(fp16_onnx))
    types = _value_types(onnx.shape_inference.infer_shapes(model))
    T = onnx.TensorProto
    kept = [n for n in model.graph.node if n.name in keep]
    assert kept
    for n in kept:  # every float tensor the decode reads or writes is float32
        floats = [types[t] for t in [*n.input, *n.output] if t and types.get(t) in (T.FLOAT, T.FLOAT16)]
        assert T.FLOAT16 not in floats, n.name
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(types[n.output[0]] == T.FLOAT16 for n in convs)  # the rest is FP16


@pytest.fixture(scope="module")
def qdq_pair(tiny_onnx, tmp_path_factory) -> tuple:
    """A Q/DQ model of ``tiny_onnx`` and its FP16-around-INT8 copy (TensorRT 11's INT8 + FP16)."""
    import cv2

    from detnet_trt.quantize.calibrate import quantize_onnx
    from detnet_trt.quantize.calibset import make_calib_set
    from detnet_trt.quantize.options import QuantizeOptions

    d = tmp_path_factory.mktemp("qdq16")
    rng = np.random.default_rng(3)
    for i in range(3):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(d / f"{i}.png"), cv2.resize(small, (128, 128), interpolation=cv2.INTER_CUBIC))
    calib = make_calib_set(d, d / "set.txt", num=3, min_images=1)
    qdq = quantize_onnx(tiny_onnx, calib, d / "tiny.int8.onnx", QuantizeOptions(method="minmax"), progress=False)
    return qdq, convert_to_fp16(qdq, d / "tiny.int8.fp16.onnx")


def test_qdq_model_gets_fp16_scales_at_opset_19(qdq_pair) -> None:
    from detnet_trt.build.fp16 import QDQ_FP16_OPSET

    qdq, fp16 = qdq_pair
    model = onnx.load(str(fp16))
    onnx.checker.check_model(model)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", QDQ_FP16_OPSET)]
    T = onnx.TensorProto
    inits = {i.name: i for i in model.graph.initializer}
    qdq_nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    n_before = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(qdq)).graph.node)
    assert len(qdq_nodes) == n_before  # no Q/DQ added or lost
    assert all(inits[n.input[1]].data_type == T.FLOAT16 for n in qdq_nodes)  # scales: float16
    assert all(inits[n.input[2]].data_type == T.INT8 for n in qdq_nodes)  # zero points: int8 (INT8 stays INT8)
    types = _value_types(onnx.shape_inference.infer_shapes(model))
    assert all(types[n.output[0]] == T.FLOAT16 for n in qdq_nodes if n.op_type == "DequantizeLinear")
    props = {p.key: p.value for p in model.metadata_props}
    assert props["detnet_trt.precision"] == '"int8"' and is_fp16_onnx(fp16)


def test_fp16_around_int8_runs_in_onnxruntime_close_to_the_qdq_model(qdq_pair) -> None:
    import onnxruntime as ort

    qdq, fp16 = qdq_pair
    x = np.random.default_rng(5).integers(0, 256, (2, 3, 128, 128), dtype=np.uint8)
    runs = []
    for path in (qdq, fp16):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs.append(dict(zip(HOST_NMS_OUTPUTS, sess.run(list(HOST_NMS_OUTPUTS), {"images": x}))))
    want, got = runs
    assert got["boxes"].dtype == np.float32 and got["class_ids"].dtype == want["class_ids"].dtype
    # INT8 rounding of FP16 activations can move a value by one quantization step: scores stay close
    assert np.abs(np.sort(got["scores"], axis=1) - np.sort(want["scores"], axis=1)).max() < 0.05


def test_a_scale_float16_cannot_hold_is_refused(qdq_pair, tmp_path) -> None:
    from detnet_trt.core.errors import ModelFileError

    qdq, _ = qdq_pair
    model = onnx.load(str(qdq))
    weight_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear"
                     and any(i.name == n.input[0] for i in model.graph.initializer))
    scale = next(i for i in model.graph.initializer if i.name == weight_dq.input[1])
    values = onnx.numpy_helper.to_array(scale).copy()
    values[0] = 1e-9  # below float16's smallest subnormal
    scale.CopyFrom(onnx.numpy_helper.from_array(values, scale.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ModelFileError, match=r"do not fit float16.*--int8-fallback fp32"):
        convert_to_fp16(tmp_path / "bad.onnx", tmp_path / "bad.fp16.onnx")
    assert not (tmp_path / "bad.fp16.onnx").exists()
