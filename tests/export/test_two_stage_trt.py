"""The two-stage graph in a real TensorRT engine (marked ``gpu``: skipped, never faked, without
CUDA, TensorRT or pycuda). ``pytest -m gpu tests/export/test_two_stage_trt.py`` on a GPU host:
the ROIAlign_TRT plugin is found, the FP32 engine's detections match ONNX Runtime's on the same
file (small input: fewer boxes than TensorRT's NMS top-K limit, so none is cut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fpn_checkpoint import their_model

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def two_stage_onnx(tmp_path_factory) -> Path:
    from detnet_trt.export.onnx import export_onnx
    from detnet_trt.models.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("two_stage_trt")
    model = their_model()
    return export_onnx(save_checkpoint(model, folder / "fpn.pt"), folder / "fpn.onnx")


def test_roialign_plugin_is_registered() -> None:
    import tensorrt as trt

    from detnet_trt.trt import compat
    from detnet_trt.trt.logger import register_plugins

    _, ok = register_plugins()
    api = compat.api_of(trt)
    assert ok and compat.has_plugin(api, *compat.PARSER_PLUGINS["RoiAlign"])


def test_fp32_engine_matches_onnxruntime(two_stage_onnx, tmp_path) -> None:
    import onnxruntime as ort

    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions
    from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS
    from detnet_trt.export.two_stage import compare_detections
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    engine = build_engine(two_stage_onnx, tmp_path / "fpn.engine", BuildOptions(precision="fp32", batch=(1, 2, 2), progress=False))
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 96), dtype=np.uint8)
    sess = ort.InferenceSession(str(two_stage_onnx), providers=["CPUExecutionProvider"])
    want = dict(zip(GRAPH_NMS_OUTPUTS, sess.run(list(GRAPH_NMS_OUTPUTS), {"images": x})))
    with TensorRTBackend(engine) as backend:
        got = backend.infer(x)
    assert compare_detections(got, want, (64, 96), tol=1e-3) == []
