"""The two-stage graph in a real TensorRT engine (marked ``gpu``: skipped, never faked, without
CUDA, TensorRT or pycuda). ``pytest -m gpu tests/export/test_two_stage_trt.py`` on a GPU host:
the ROIAlign_TRT plugin is found, the FP32 engine's detections match ONNX Runtime's on the same
file (small input: fewer boxes than TensorRT's NMS top-K limit, so none is cut)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
_HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def two_stage_onnx(tmp_path_factory) -> Path:
    from detnet_trt.export.onnx import export_onnx
    from detnet_trt.models import load_detnet_pytorch_fpn
    from detnet_trt.models.checkpoint import save_checkpoint

    spec = importlib.util.spec_from_file_location("_fpn_ref_trt", _HERE.parent / "models" / "test_detnet_fpn.py")
    ref = importlib.util.module_from_spec(spec)
    sys.modules["_fpn_ref_trt"] = ref
    spec.loader.exec_module(ref)
    folder = tmp_path_factory.mktemp("two_stage_trt")
    model = load_detnet_pytorch_fpn(ref._their_checkpoint(), ref.NUM_CLASSES, input_size=ref.SIZE, topk=ref.POST)
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
