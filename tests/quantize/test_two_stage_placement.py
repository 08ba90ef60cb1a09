"""Q/DQ placement by model kind: the two-stage detector's RPN and box-head layers are INT8 by
default (all its Conv and Gemm nodes), the dense detector's head stays float as before."""

from __future__ import annotations

import onnx
import pytest
from fpn_checkpoint import their_model

from detnet_trt.core.meta import ModelMeta
from detnet_trt.core.onnx_meta import meta_of
from detnet_trt.export.onnx import export_onnx
from detnet_trt.models.checkpoint import save_checkpoint
from detnet_trt.quantize.placement import feature_nodes, keeps_head_float, plan_quantization, quantizable_nodes


@pytest.fixture(scope="module")
def two_stage_onnx(tmp_path_factory) -> onnx.ModelProto:
    model = their_model()
    d = tmp_path_factory.mktemp("qplace")
    path = export_onnx(save_checkpoint(model, d / "fpn.pt"), d / "fpn.onnx", verify=False)
    return onnx.load(str(path))


def test_two_stage_default_quantizes_every_conv_and_gemm(two_stage_onnx) -> None:
    proto = two_stage_onnx
    layers = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    assert {"Conv", "Gemm"} <= {n.op_type for n in proto.graph.node if n.name in layers}
    # the dense rule would keep the final layers (RPN score / delta convs, box-head FC) float ...
    finals = [n for n in proto.graph.node if n.op_type == "Gemm" or n.name in feature_nodes(proto)[1]]
    dense_excluded = set(plan_quantization(proto)[0])
    assert finals and all(n.name in dense_excluded for n in finals)
    # ... the two-stage model's default quantizes them all
    q = quantizable_nodes(proto)
    assert set(layers) <= set(q)
    float_ops = {n.op_type for n in proto.graph.node if n.name not in set(q)}
    assert {"RoiAlign", "NonMaxSuppression", "TopK"} <= float_ops  # selection, pooling, NMS stay float
    assert {n.op_type for n in proto.graph.node if n.name in set(q)} <= {"Conv", "Gemm", "Add"}
    # --keep-float still keeps a layer float
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    assert gemm.name not in quantizable_nodes(proto, keep_float=[gemm.name])


def test_rule_is_keyed_on_the_metadata(two_stage_onnx) -> None:
    meta = meta_of(two_stage_onnx)
    assert meta is not None and meta.extra["detector"] == "two_stage"
    assert keeps_head_float(meta) is False and keeps_head_float(meta, False) is False
    dense = meta.with_updates(extra={k: v for k, v in meta.extra.items() if k != "detector"})
    assert isinstance(dense, ModelMeta)
    assert keeps_head_float(dense) is True and keeps_head_float(dense, False) is False
    assert keeps_head_float(None) is True
