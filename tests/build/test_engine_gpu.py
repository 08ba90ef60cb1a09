"""Real TensorRT engines of ``detnet_tiny`` on a GPU (marked ``gpu``: skipped, never faked, where
CUDA, TensorRT or pycuda is missing). Run on a Jetson or a GPU workstation with
``pytest -m gpu tests/test_engine_gpu.py``: FP16 and INT8 engines built, outputs compared with
ONNX Runtime on the same ONNX, sidecar mismatch refused, use from a worker thread, CUDA graphs,
in-engine EfficientNMS."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from detnet_trt.core.config import GRAPH_NMS, PostprocessConfig
from detnet_trt.core.errors import IncompatibleError
from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS

pytestmark = pytest.mark.gpu

SIZE = (128, 128)


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random images (closer to photographs than noise), N x 3 x H x W uint8."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.append(cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


def _ort(path: Path, x: np.ndarray, names=HOST_NMS_OUTPUTS) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(list(names), {"images": x})))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu")


@pytest.fixture(scope="module")
def calib_set(work) -> Path:
    from detnet_trt.quantize.calibset import make_calib_set

    d = work / "calib"
    d.mkdir()
    for i, img in enumerate(_images(16, seed=7)):
        cv2.imwrite(str(d / f"{i}.png"), img.transpose(1, 2, 0))
    return make_calib_set(d, work / "set.txt", num=16, min_images=1)


@pytest.fixture(scope="module")
def fp16_engine(tiny_onnx, work) -> Path:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions

    return build_engine(tiny_onnx, work / "tiny_fp16.engine", BuildOptions(precision="fp16", batch=(1, 2, 4),
                        timing_cache=work / "timing.cache", progress=False))


@pytest.fixture(scope="module")
def int8_engine(tiny_onnx, calib_set, work) -> Path:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions

    return build_engine(tiny_onnx, work / "tiny_int8.engine", BuildOptions(precision="int8", calib=calib_set,
                        batch=(1, 2, 4), timing_cache=work / "timing.cache", progress=False))


def test_fp16_engine_matches_onnxruntime(fp16_engine, tiny_onnx) -> None:
    from detnet_trt.export.onnx import compare_outputs
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    with TensorRTBackend(fp16_engine) as backend:
        for n in (1, 2, 4):  # every batch in the profile, buffers allocated once
            x = _images(n, seed=n)
            got = backend.infer(x)
            want = _ort(tiny_onnx, x)
            assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
            assert got["class_ids"].dtype == np.int32
            assert compare_outputs(got, want, SIZE, rtol=1e-2) == []


def test_int8_engine_matches_onnxruntime_on_the_qdq_onnx(int8_engine, work) -> None:
    from detnet_trt.core.sidecar import read_sidecar
    from detnet_trt.quantize.calibrate import is_qdq_onnx
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    qdq = work / "tiny_int8.int8.onnx"
    assert is_qdq_onnx(qdq)  # kept beside the engine
    info = read_sidecar(int8_engine)
    assert info.meta.precision == "int8" and len(info.calib_sha256) == 64
    x = _images(2, seed=3)
    with TensorRTBackend(int8_engine) as backend:
        got = backend.infer(x)
    want = _ort(qdq, x)
    # TensorRT and ONNX Runtime round INT8 differently: compare the (sorted) scores, and the best
    # candidate's box and class where it clearly leads (near-ties may swap ranks).
    from detnet_trt.export.onnx import untied

    np.testing.assert_allclose(got["scores"], want["scores"], atol=0.05)
    clear = untied(want["scores"], rtol=0.1)[:, 0]
    np.testing.assert_allclose(got["boxes"][clear, 0], want["boxes"][clear, 0], atol=0.05 * max(SIZE))
    np.testing.assert_array_equal(got["class_ids"][clear, 0], want["class_ids"][clear, 0])


def test_sidecar_records_the_build(fp16_engine, tiny_onnx, work) -> None:
    import tensorrt as trt

    from detnet_trt.core.fileio import sha256_file
    from detnet_trt.core.sidecar import read_sidecar
    from detnet_trt.trt.cuda import device_info

    info = read_sidecar(fp16_engine)
    name, cc = device_info(0)
    assert info.tensorrt_version == trt.__version__
    assert (info.gpu_name, info.compute_capability) == (name, cc)
    assert info.engine_sha256 == sha256_file(fp16_engine)
    assert info.onnx_sha256 in (sha256_file(tiny_onnx), sha256_file(work / "tiny_fp16.fp16.onnx"))
    assert info.batch_range == (1, 2, 4)
    assert (work / "timing.cache").stat().st_size > 0  # written, and reused by the INT8 build


def test_sidecar_mismatch_is_refused(fp16_engine, tmp_path) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "copy.engine"
    shutil.copy(fp16_engine, engine)
    d = json.loads(Path(str(fp16_engine) + ".json").read_text())
    d["tensorrt_version"] = "8.0.0"
    Path(str(engine) + ".json").write_text(json.dumps(d))
    backend = TensorRTBackend(engine)
    with pytest.raises(IncompatibleError, match=r"built with TensorRT 8\.0\.0, running TensorRT .*rebuild it here"):
        backend.open()
    assert not backend.is_open


def test_used_from_a_worker_thread(fp16_engine) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    x = _images(2, seed=5)
    backend = TensorRTBackend(fp16_engine).open()  # opened on this thread ...
    try:
        here = backend.infer(x)
        result: dict = {}

        def work() -> None:
            try:
                result["out"] = backend.infer(x)  # ... run on another
            except BaseException as err:  # noqa: BLE001 - re-raised below
                result["err"] = err

        t = threading.Thread(target=work)
        t.start()
        t.join()
        assert "err" not in result, result.get("err")
        for k in HOST_NMS_OUTPUTS:
            np.testing.assert_array_equal(result["out"][k], here[k])
    finally:
        backend.close()
    assert not backend.is_open


def test_cuda_graph_gives_the_same_outputs(fp16_engine) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    x = _images(2, seed=9)
    with TensorRTBackend(fp16_engine) as plain:
        want = plain.infer(x)
    with TensorRTBackend(fp16_engine, cuda_graph=True) as graphed:
        first = graphed.infer(x)  # runs normally, then captures
        second = graphed.infer(x)  # replays the graph
        timings = graphed.gpu_timings()
    for k in HOST_NMS_OUTPUTS:
        np.testing.assert_array_equal(first[k], want[k])
        np.testing.assert_array_equal(second[k], want[k])
    assert timings is not None and set(timings) == {"h2d", "compute", "d2h"} and timings["compute"] > 0


def test_efficient_nms_engine(tiny_onnx, work) -> None:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend
    from detnet_trt.runtime.postprocess import postprocess

    engine = build_engine(tiny_onnx, work / "tiny_nms.engine", BuildOptions(
        precision="fp32", nms="efficient", post=PostprocessConfig(conf=GRAPH_NMS.conf, iou=0.5, max_det=20),
        batch=(1, 2, 2), timing_cache=work / "timing.cache", progress=False))
    x = _images(2, seed=11)
    with TensorRTBackend(engine) as backend:
        out = backend.infer(x)
    assert set(out) == set(GRAPH_NMS_OUTPUTS)
    assert out["det_boxes"].shape == (2, 20, 4) and out["num_dets"].shape == (2,)
    in_engine = postprocess(out, conf=0.05, iou=0.5, max_det=20)
    on_host = postprocess(_ort(tiny_onnx, x), conf=0.05, iou=0.5, max_det=20)
    for a, b in zip(in_engine, on_host):  # the best detection of each image agrees
        assert len(a) and len(b)
        np.testing.assert_allclose(a.boxes[0], b.boxes[0], atol=1.0)
        assert a.class_ids[0] == b.class_ids[0]


# --- precision per layer (engine inspector) -----------------------------------------------------
def _engine_layers(path: Path) -> list:
    import tensorrt as trt

    from detnet_trt.build.layers import engine_layers
    from detnet_trt.trt.logger import register_plugins

    logger, _ = register_plugins()
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    assert engine is not None
    info = engine_layers(engine)
    assert info.detailed  # built with ProfilingVerbosity.DETAILED
    return info.layers


def _is_conv(layer) -> bool:
    return "Convolution" in layer.type or "Convolution" in layer.implementation


def test_int8_engine_convolutions_int8_the_rest_fp16_decode_fp32(int8_engine, tiny_onnx) -> None:
    """--int8 (default fallback fp16): the quantized convolutions INT8, what INT8 leaves (the head's
    final convolutions) FP16, the decode and top-k FP32; the sidecar has the same counts."""
    import onnx

    from detnet_trt.build.fp16 import fp32_nodes
    from detnet_trt.core.sidecar import read_sidecar

    layers = _engine_layers(int8_engine)
    convs = [x for x in layers if _is_conv(x)]
    assert convs and sum(x.precision == "INT8" for x in convs) >= len(convs) - 6  # the head's finals are float
    assert any(x.precision == "FP16" for x in convs)  # the head's final convolutions: FP16, not FP32
    decode = set(fp32_nodes(onnx.load(str(tiny_onnx))))
    topk = [x for x in layers if "TopK" in (x.type, x.implementation) or any(n in x.name for n in decode if "TopK" in n)]
    assert topk and all(x.precision == "FP32" for x in topk)
    info = read_sidecar(int8_engine)
    from collections import Counter

    assert info.build["layers"]["precision"] == dict(Counter(x.precision or "?" for x in layers).most_common())
    assert "FP16" in info.build["builder_flags"] or info.build["strongly_typed"]


def test_int8_fallback_fp32_has_no_fp16_layer(tiny_onnx, calib_set, work) -> None:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions

    engine = build_engine(tiny_onnx, work / "tiny_int8_fp32.engine", BuildOptions(
        precision="int8", int8_fallback="fp32", calib=calib_set, batch=(1, 2, 4),
        timing_cache=work / "timing.cache", progress=False))
    layers = _engine_layers(engine)
    assert any(x.precision == "INT8" for x in layers)
    assert not any(x.precision == "FP16" for x in layers)


# --- DLA (Jetson AGX / NX Orin, Xavier; skipped where the GPU has no DLA core) -------------------
@pytest.fixture(scope="module")
def dla_cores() -> int:
    import tensorrt as trt

    from detnet_trt.build.builder import create_builder
    from detnet_trt.trt import compat
    from detnet_trt.trt.logger import get_logger

    cores = int(create_builder(get_logger()).num_DLA_cores)
    if cores == 0:
        pytest.skip("this GPU has no DLA core")
    if not compat.api_of(trt).dla_precisions():
        pytest.skip(f"TensorRT {trt.__version__} does not drive the DLA")
    return cores


def test_dla_static_fp16_runs_layers_on_the_dla(dla_cores, tiny_onnx, work) -> None:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions
    from detnet_trt.core.sidecar import read_sidecar
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    engine = build_engine(tiny_onnx, work / "tiny_dla.engine", BuildOptions(
        precision="fp16", dla_core=0, dla_gpu_fallback=True, batch=(1, 1, 1), progress=False))
    layers = _engine_layers(engine)
    assert any(x.device == "DLA" for x in layers)  # the convolutions; top-k and decode on the GPU
    info = read_sidecar(engine)
    assert info.build["layers"]["device"].get("DLA", 0) > 0
    assert 0 < info.build["dla_plan"]["dla_capable"] < info.build["dla_plan"]["network_layers"]
    x = _images(1, seed=9)
    with TensorRTBackend(engine) as backend:
        got = backend.infer(x)
    want = _ort(tiny_onnx, x)
    np.testing.assert_allclose(np.sort(got["scores"], axis=1), np.sort(want["scores"], axis=1), atol=0.05)


def test_dla_without_gpu_fallback_names_the_layers_it_cannot_run(dla_cores, tiny_onnx, work) -> None:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions, EngineBuildError

    with pytest.raises(EngineBuildError, match="cannot run on the DLA.*--dla-gpu-fallback"):
        build_engine(tiny_onnx, work / "tiny_dla_strict.engine",
                     BuildOptions(precision="fp16", dla_core=0, batch=(1, 1, 1), progress=False))
    assert not (work / "tiny_dla_strict.engine").exists()


def test_dla_dynamic_batch_is_refused_before_any_work(tiny_onnx, tmp_path) -> None:
    from detnet_trt.build.options import BuildOptions
    from detnet_trt.core.errors import InputError

    with pytest.raises(InputError, match="fixed shapes only"):
        BuildOptions(precision="fp16", dla_core=0, batch=(1, 2, 4))


def test_dla_int8_per_tensorrt_version(dla_cores, tiny_onnx, calib_set, work) -> None:
    """INT8 on the DLA from a Q/DQ ONNX: refused where the DLA takes INT8 only through implicit
    quantization (8.6, 10.0-10.7), built with layers on the DLA where it takes Q/DQ (11.4.1+)."""
    import tensorrt as trt

    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions
    from detnet_trt.trt import compat

    opts = BuildOptions(precision="int8", calib=calib_set, dla_core=0, dla_gpu_fallback=True, batch=(1, 1, 1),
                        progress=False)
    out = work / "tiny_dla_int8.engine"
    if "int8" not in compat.api_of(trt).dla_precisions():
        with pytest.raises(compat.UnsupportedPrecisionError, match="implicit quantization"):
            build_engine(tiny_onnx, out, opts)
        return
    engine = build_engine(tiny_onnx, out, opts)
    layers = _engine_layers(engine)
    assert any(x.device == "DLA" and x.precision == "INT8" for x in layers)


# --- build --verify ------------------------------------------------------------------------------
def test_verify_records_agreement_in_the_sidecar(tiny_onnx, work) -> None:
    import cv2

    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions, VerifyOptions
    from detnet_trt.core.sidecar import read_sidecar

    imgs = work / "verify_imgs"
    imgs.mkdir(exist_ok=True)
    for i, img in enumerate(_images(4, seed=11)):
        cv2.imwrite(str(imgs / f"{i}.png"), img.transpose(1, 2, 0))
    engine = build_engine(tiny_onnx, work / "tiny_verify.engine", BuildOptions(
        precision="fp16", batch=(1, 1, 2), timing_cache=work / "timing.cache", progress=False,
        verify=VerifyOptions(imgs)))
    record = read_sidecar(engine).build["verify"]
    assert record["images"] == 4 and record["reference"].endswith(".onnx")
    assert record["match_rate"] >= 0.9  # FP16 against FP32: the same detections, nearly all
