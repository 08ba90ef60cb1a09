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
