"""The backend interface with ONNX Runtime and PyTorch: life cycle, validation, providers, errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from detnet_trt import Detector, load_backend
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import IncompatibleError, InputError, MissingDependencyError, ModelFileError
from detnet_trt.core.meta import HOST_NMS_OUTPUTS
from detnet_trt.runtime.backends.ort import OnnxRuntimeBackend, resolve_providers
from detnet_trt.runtime.backends.torch_backend import TorchBackend

H, W = 128, 128  # tiny_checkpoint's input size


def _images(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, H, W), dtype=np.uint8)


def test_load_backend_picks_by_suffix(tiny_checkpoint, tiny_onnx, tmp_path) -> None:
    assert isinstance(load_backend(tiny_checkpoint), TorchBackend)
    assert isinstance(load_backend(tiny_onnx), OnnxRuntimeBackend)
    with pytest.raises(ModelFileError, match="unknown model file type"):
        load_backend(tmp_path / "model.h5")
    with pytest.raises(ModelFileError, match="no such file"):
        load_backend(tmp_path / "missing.onnx")
    with pytest.raises(ModelFileError, match="no such file"):
        load_backend(tmp_path / "missing.pt")


def test_life_cycle_and_outputs(tiny_onnx) -> None:
    be = OnnxRuntimeBackend(tiny_onnx)
    assert not be.is_open and be.meta.input_size == (H, W)
    with be as opened:
        assert opened is be and be.is_open and be.active_providers == ["CPUExecutionProvider"]
        out = be.infer(_images(3))
        be.open()  # idempotent
    assert not be.is_open and be.session is None
    be.close()  # idempotent
    k = be.meta.topk
    assert {n: (a.shape, a.dtype) for n, a in out.items()} == {
        "boxes": ((3, k, 4), np.float32),
        "scores": ((3, k), np.float32),
        "class_ids": ((3, k), np.int32),
    }
    assert out["class_ids"].min() >= 0 and out["class_ids"].max() < len(be.meta.class_names)
    again = be.infer(_images(3))  # infer() opens a closed backend
    assert be.is_open and np.array_equal(again["scores"], out["scores"])
    be.close()


@pytest.mark.parametrize(
    "images,match",
    [
        (np.zeros((1, 3, H, W), np.float32), "must be uint8"),
        (np.zeros((1, H, W, 3), np.uint8), r"shape \('N', 3, 128, 128\) \(nchw\)"),  # NHWC into an NCHW model
        (np.zeros((1, 3, 64, 64), np.uint8), "must have shape"),
        (np.zeros((3, H, W), np.uint8), "must have shape"),
        (np.zeros((0, 3, H, W), np.uint8), "empty batch"),
        ([[0]], "numpy array"),
        (np.zeros((3, 3, H, W), np.uint8), "at most 2"),
    ],
)
def test_inputs_are_validated_with_the_tensor_name(tiny_onnx, images, match: str) -> None:
    with OnnxRuntimeBackend(tiny_onnx, max_batch=2) as be, pytest.raises(InputError, match="'images'") as err:
        be.infer(images)
    assert err.match(match)


def test_providers(tiny_onnx) -> None:
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    assert resolve_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(InputError, match="unknown ONNX Runtime device"):
        resolve_providers("tpu")
    with OnnxRuntimeBackend(tiny_onnx, providers="cpu", threads=1) as be:
        assert be.describe()["providers"] == "CPUExecutionProvider" and be.describe()["threads"] == "1"
    with pytest.raises(InputError, match="threads"):
        OnnxRuntimeBackend(tiny_onnx, threads=0)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_asked_for_gpu_provider_that_is_missing_is_an_error(tiny_onnx, device: str) -> None:
    wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[device]
    if wanted in ort.get_available_providers():
        pytest.skip(f"{wanted} is installed here")
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx, providers=device)


def test_metadata_that_does_not_match_the_graph(tiny_onnx, tmp_path) -> None:
    model = onnx.load(str(tiny_onnx))
    for p in model.metadata_props:
        if p.key == "detnet_trt.nms":
            p.value = '"onnx"'  # claims in-graph NMS outputs the graph does not have
    bad = tmp_path / "mismatch.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelFileError, match="metadata says"):
        OnnxRuntimeBackend(bad).open()


def test_onnx_without_metadata_and_corrupt_files(tmp_path) -> None:
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [x])
    foreign.write_bytes(onnx.helper.make_model(g).SerializeToString())
    with pytest.raises(ModelFileError, match="no detnet_trt metadata"):
        load_backend(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_backend(junk)


def test_torch_backend(tiny_checkpoint) -> None:
    import torch

    from detnet_trt.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    images = _images(2, seed=4)
    with TorchBackend(model) as be:
        out = be.infer(images)
        assert be.describe()["device"] == "cpu"
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(images))]
    for name, w in zip(HOST_NMS_OUTPUTS, want):
        np.testing.assert_array_equal(out[name], w)
    from_path = TorchBackend(tiny_checkpoint)
    assert from_path.meta.checkpoint_sha256 and from_path.meta.class_names == model.class_names
    with pytest.raises(InputError, match="device"):
        TorchBackend(model, device="tpu")
    with pytest.raises(InputError, match="checkpoint path or a DetNetDetector"):
        TorchBackend(42)
    if not torch.cuda.is_available():
        with pytest.raises(IncompatibleError, match="no CUDA GPU"):
            TorchBackend(model, device="cuda").open()


def test_backends_are_interchangeable_in_the_pipeline(tiny_checkpoint, tiny_onnx) -> None:
    frames = [np.random.default_rng(i).integers(0, 256, (240 + 60 * i, 320, 3), dtype=np.uint8) for i in range(3)]
    results = []
    for be in (TorchBackend(tiny_checkpoint), OnnxRuntimeBackend(tiny_onnx)):
        with be:
            results.append(Detector(be, PostprocessConfig(conf=0.5, iou=0.5), max_batch=2)(frames))
    for a, b in zip(*results):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        assert a.boxes[:, 2].max() <= 320 and a.boxes[:, 3].max() <= 240 + 60 * 2  # in frame pixels
