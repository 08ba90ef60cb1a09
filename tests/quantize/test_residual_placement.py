"""Q/DQ placement at the residual and FPN adds, on the exported demo model
(``detnet_trt/assets/detnet_tiny_synth.pt``), as NVIDIA's placement guidance for TensorRT asks:
each convolution-fed Add has Q/DQ on exactly the input that does not come from the convolution
TensorRT fuses it into, and no convolution output that feeds only an Add carries Q/DQ unless it
is that Add's other (shortcut) input.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from detnet_trt.quantize.calibrate import prepare_fp32, quantize_onnx, read_quant_provenance
from detnet_trt.quantize.calibset import make_calib_set
from detnet_trt.quantize.options import QuantizeOptions
from detnet_trt.quantize.placement import PLACEMENT, residual_inputs

DEMO = Path(__file__).resolve().parents[2] / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"
CONVS = ("Conv", "ConvTranspose")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from detnet_trt.export.onnx import export_onnx

    d = tmp_path_factory.mktemp("residual")
    fp32 = export_onnx(DEMO, d / "demo.onnx")
    imgs = d / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(imgs / f"{i}.png"), cv2.resize(small, (320, 320), interpolation=cv2.INTER_CUBIC))
    calib = make_calib_set(imgs, d / "set.txt", num=4, min_images=1)
    int8 = quantize_onnx(fp32, calib, d / "demo.int8.onnx", QuantizeOptions(method="minmax", batch=2),
                         progress=False)
    prepare_fp32(fp32, d / "prepared.onnx")
    return {"fp32": fp32, "int8": int8, "prepared": d / "prepared.onnx"}


def _graph(model: onnx.ModelProto) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    producer = {t: n for n in model.graph.node for t in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    return producer, consumers


def _source(t: str, producer: dict[str, onnx.NodeProto]) -> tuple[str, bool]:
    """(float tensor behind ``t``, whether ``t`` is a Q/DQ pair's output)."""
    dq = producer.get(t)
    if dq is not None and dq.op_type == "DequantizeLinear":
        q = producer[dq.input[0]]
        assert q.op_type == "QuantizeLinear"
        return q.input[0], True
    return t, False


def test_each_conv_fed_add_quantizes_exactly_its_non_fused_input(demo: dict[str, Path]) -> None:
    prepared = onnx.load(str(demo["prepared"]))
    fused = residual_inputs(prepared)
    pprod, pcons = _graph(prepared)
    model = onnx.load(str(demo["int8"]))
    producer, _ = _graph(model)
    adds = {n.name: n for n in model.graph.node if n.op_type == "Add"}
    conv_fed = [n for n in prepared.graph.node if n.op_type == "Add"
                and any(pprod.get(t) is not None and pprod[t].op_type in CONVS for t in n.input)]
    # the demo model's bottleneck adds (projection and identity shortcuts) and its FPN adds
    assert len(conv_fed) == 9 and set(fused) == {n.name for n in conv_fed}
    for add in conv_fed:
        got = [_source(t, producer) for t in adds[add.name].input]
        assert [t for t, _ in got] == list(add.input), add.name  # same tensors, only Q/DQ differs
        for (t, quantized) in got:
            assert quantized is (t != fused[add.name]), (add.name, t)
        # the fused input is a convolution's output that feeds only this add
        assert pprod[fused[add.name]].op_type in CONVS and len(pcons[fused[add.name]]) == 1
    prov = read_quant_provenance(demo["int8"])
    assert prov["placement"] == PLACEMENT and prov["plan"]["residual_fused_inputs"] == fused


def test_no_qdq_between_a_convolution_and_the_add_it_fuses_into(demo: dict[str, Path]) -> None:
    model = onnx.load(str(demo["int8"]))
    producer, consumers = _graph(model)
    checked = 0
    for conv in (n for n in model.graph.node if n.op_type in CONVS):
        out = conv.output[0]
        users = consumers.get(out, [])
        direct = [u for u in users if u.op_type == "Add"]
        via_qdq = [a for q in users if q.op_type == "QuantizeLinear"
                   for dq in consumers[q.output[0]] for a in consumers[dq.output[0]] if a.op_type == "Add"]
        if len(users) == 1 and direct:
            checked += 1  # the fused convolution: its add reads the float output
        for add in via_qdq:  # quantized only as the other, shortcut input of an add fed by the fused conv
            other = [_source(t, producer)[0] for t in add.input if _source(t, producer)[0] != out]
            assert other and producer[other[0]].op_type in CONVS, (conv.name, add.name)
            assert not _source(next(t for t in add.input if _source(t, producer)[0] == other[0]), producer)[1]
    assert checked == 9


def test_residual_inputs_prefers_the_main_branch_of_a_projection_block() -> None:
    """conv1 -> conv2 (main) and conv_s (shortcut) from one input: the main branch is fused."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["s"], name="shortcut"),
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv1"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="conv2"),
        helper.make_node("Add", ["s", "b"], ["y"], name="add"),
        helper.make_node("Conv", ["y", "w"], ["c"], name="conv3"),
        helper.make_node("Add", ["c", "y"], ["z"], name="identity_add"),
        helper.make_node("Add", ["z", "z"], ["out"], name="self_add"),
    ]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 4, 4]) for n in ("x", "out")]
    model = helper.make_model(helper.make_graph(nodes, "g", vi[:1], vi[1:], [w]))
    assert residual_inputs(model) == {"add": "b", "identity_add": "c"}
