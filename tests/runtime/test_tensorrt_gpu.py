"""The TensorRT backend's life cycle on a real GPU (marked ``gpu``: skipped, never faked, without
CUDA + TensorRT + pycuda): two engines on two threads closed first-opened-first-closed, close()
during an inference in flight, 50 open / infer / close cycles with GPU memory unchanged, CUDA
graphs with alternating batch sizes and a capture that fails, foreign and truncated engines beside
a matching sidecar, the engine inspector and the layer profiler on a real engine, and INT8 < FP16
< FP32 latency at the optimal batch (DetNet-59, ``slow`` too), and the camera loop letterboxing into
the engine's two page-locked input slots with the detections of the copying path.

Run on a GPU machine with TensorRT and pycuda: ``python -m pytest -m gpu tests/runtime/test_tensorrt_gpu.py``.
The same orderings are checked on CPU against fakes in test_tensorrt_lifecycle.py."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from detnet_trt.core.errors import ModelFileError
from detnet_trt.core.meta import HOST_NMS_OUTPUTS

pytestmark = pytest.mark.gpu

SIZE = (128, 128)


def _images(n: int, seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, *size), dtype=np.uint8)


def _build(onnx: Path, out: Path, precision: str, batch=(1, 2, 4), **kw) -> Path:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions

    return build_engine(onnx, out, BuildOptions(precision=precision, batch=batch, timing_cache=out.parent / "timing.cache",
                                                progress=False, **kw))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trt_gpu")


@pytest.fixture(scope="module")
def fp16_engine(tiny_onnx, work) -> Path:
    return _build(tiny_onnx, work / "tiny_fp16.engine", "fp16")


@pytest.fixture(scope="module")
def fp32_engine(tiny_onnx, work) -> Path:
    return _build(tiny_onnx, work / "tiny_fp32.engine", "fp32")


def _free_gpu_memory() -> int:
    import pycuda.driver as drv

    from detnet_trt.trt.cuda import CudaContext

    ctx = CudaContext(0)
    try:
        with ctx.active():
            free, _ = drv.mem_get_info()
            return int(free)
    finally:
        ctx.close()


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for k in HOST_NMS_OUTPUTS:
        np.testing.assert_array_equal(a[k], b[k])


def test_two_engines_on_two_threads_closed_first_opened_first(fp16_engine, fp32_engine) -> None:
    """Each engine opened and run on its own thread; the first opened is closed first (from the main
    thread) while the other keeps running on its thread; then the other."""
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    x = _images(2, seed=1)
    with TensorRTBackend(fp16_engine) as ref16, TensorRTBackend(fp32_engine) as ref32:
        want = {"a": ref16.infer(x), "b": ref32.infer(x)}
    backends = {"a": TensorRTBackend(fp16_engine), "b": TensorRTBackend(fp32_engine)}
    opened = {name: threading.Event() for name in backends}
    stop = {name: threading.Event() for name in backends}
    runs = dict.fromkeys(backends, 0)
    errors: list[BaseException] = []

    def loop(name: str) -> None:
        try:
            backends[name].open()  # opened on this thread
            opened[name].set()
            while not stop[name].is_set():
                _same(backends[name].infer(x), want[name])
                runs[name] += 1
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)
            opened[name].set()

    threads = {}
    for name in ("a", "b"):  # a is opened first
        threads[name] = threading.Thread(target=loop, args=(name,))
        threads[name].start()
        assert opened[name].wait(60)
    time.sleep(0.5)
    stop["a"].set()
    threads["a"].join(30)
    backends["a"].close()  # the first opened, closed first, from another thread than its own
    before = runs["b"]
    time.sleep(0.5)
    assert runs["b"] > before  # b still runs on its thread after a's close
    stop["b"].set()
    threads["b"].join(30)
    backends["b"].close()
    assert not errors, errors
    assert runs["a"] > 0 and not backends["a"].is_open and not backends["b"].is_open


def test_close_during_an_inference_in_flight(fp16_engine) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    x = _images(4, seed=2)
    backend = TensorRTBackend(fp16_engine).open()
    want = backend.infer(x)
    started, stop = threading.Event(), threading.Event()
    results: list[dict[str, np.ndarray]] = []
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                started.set()
                results.append(backend.infer(x))  # may reopen after a close(): the base class's lazy open
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    t = threading.Thread(target=loop)
    t.start()
    assert started.wait(10)
    for _ in range(5):
        backend.close()  # waits for the inference in flight, never frees under it
        time.sleep(0.01)
    stop.set()
    t.join(30)
    backend.close()
    assert not errors, errors
    assert results
    for r in results:
        _same(r, want)


def test_fifty_open_infer_close_cycles_leave_gpu_memory_unchanged(fp16_engine) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    x = _images(4, seed=3)
    with TensorRTBackend(fp16_engine) as backend:  # one warm cycle: TensorRT's and CUDA's one-off set-up
        backend.infer(x)
    before = _free_gpu_memory()
    for _ in range(50):
        with TensorRTBackend(fp16_engine, cuda_graph=True) as backend:
            backend.infer(x)
            backend.infer(x)  # a graph captured and launched, then freed at close
    after = _free_gpu_memory()
    assert before - after < 8 * 2**20, f"{(before - after) / 2**20:.1f} MiB of GPU memory not given back"


def test_cuda_graphs_with_alternating_batch_sizes(fp16_engine) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    inputs = {n: _images(n, seed=10 + n) for n in (1, 4)}
    with TensorRTBackend(fp16_engine) as plain:
        want = {n: plain.infer(x) for n, x in inputs.items()}
    with TensorRTBackend(fp16_engine, cuda_graph=True) as graphed:
        for n in (1, 4, 1, 4, 1, 4):
            _same(graphed.infer(inputs[n]), want[n])
        assert sorted(graphed._graphs) == [1, 4]  # both kept: the second round replayed them


def test_a_cuda_graph_capture_that_fails_falls_back(fp16_engine, caplog) -> None:
    """A real capture failure: a synchronous copy under capture invalidates it (a thread-local
    capture forbids it); the backend must end it, destroy it, warn once and go on with enqueues."""
    import pycuda.driver as drv

    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    x = _images(2, seed=4)
    with TensorRTBackend(fp16_engine) as plain:
        want = plain.infer(x)
    backend = TensorRTBackend(fp16_engine, cuda_graph=True).open()
    real = backend._enqueue
    scratch = drv.pagelocked_empty(16, np.uint8)
    target = backend._tensors[0].device
    calls = []

    def breaking(stream_handle: int) -> bool:
        calls.append(stream_handle)
        if len(calls) == 2:  # the first call is the plain run, the second the one under capture
            drv.memcpy_htod(target.address, scratch)  # synchronous: not allowed while capturing
        return real(stream_handle)

    backend._enqueue = breaking  # type: ignore[assignment]
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(4):
                _same(backend.infer(x), want)  # never raises: the work was done
        assert backend._graphs == {} and backend._graphs_failed
        assert sum("CUDA graph capture failed" in r.getMessage() for r in caplog.records) == 1
        assert len(calls) == 5  # plain, capture (failed), then plain enqueues only
    finally:
        backend.close()


def _sidecar_without_hash(src: Path, dst: Path) -> None:
    d = json.loads(Path(str(src) + ".json").read_text())
    d["engine_sha256"] = ""  # a sidecar that does not record the hash: TensorRT itself sees the bytes
    Path(str(dst) + ".json").write_text(json.dumps(d))


@pytest.mark.parametrize("kind", ["truncated", "foreign"])
def test_a_bad_engine_beside_a_matching_sidecar(fp16_engine, tiny_onnx, work, tmp_path, kind: str) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "bad.engine"
    if kind == "truncated":
        data = fp16_engine.read_bytes()
        engine.write_bytes(data[: len(data) // 2])
        match = "could not deserialize the engine"
    else:  # an engine of another graph (in-engine NMS: other outputs) under this engine's sidecar
        other = _build(tiny_onnx, work / "tiny_nms.engine", "fp16", batch=(1, 2, 2), nms="efficient")
        shutil.copy(other, engine)
        match = "do not match the sidecar"
    _sidecar_without_hash(fp16_engine, engine)
    before = _free_gpu_memory()
    for _ in range(3):
        backend = TensorRTBackend(engine)
        with pytest.raises(ModelFileError, match=match):
            backend.open()
        assert not backend.is_open
    assert before - _free_gpu_memory() < 8 * 2**20  # a failed open releases what it made


def test_inspector_and_layer_profile_of_a_real_engine(fp16_engine) -> None:
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend
    from detnet_trt.trt.inspector import parse_engine_information
    from detnet_trt.trt.profiler import summarize_layer_times

    x = _images(2, seed=6)
    with TensorRTBackend(fp16_engine, cuda_graph=True) as backend:
        info = parse_engine_information(backend.layer_information())
        assert info.layers and set(info.bindings) >= {"images", *HOST_NMS_OUTPUTS}
        if info.detailed:
            assert set(info.counts("device")) == {"GPU"} and "FP16" in info.counts("precision")
        times = backend.profile_layers(x, runs=5)
        summary = summarize_layer_times(times, 5)
        assert summary["layer_sum_ms"] > 0 and all(r["calls"] >= 5 for r in summary["layers"])
        want = backend.infer(x)  # the profiler is detached: graphs capture and replay again
        _same(backend.infer(x), want)
        assert 2 in backend._graphs


@pytest.mark.slow
def test_int8_faster_than_fp16_faster_than_fp32_at_the_optimal_batch(work) -> None:
    """DetNet-59 (random weights: speed does not depend on them) at 512 x 512, batch 8."""
    import cv2

    from detnet_trt.apps.bench import BenchOptions, benchmark
    from detnet_trt.export.onnx import export_onnx
    from detnet_trt.models import build_model
    from detnet_trt.models.checkpoint import save_checkpoint
    from detnet_trt.quantize.calibset import make_calib_set
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

    ckpt = save_checkpoint(build_model("detnet59", 3, class_names=["a", "b", "c"], input_size=(512, 512)).eval(),
                           work / "detnet59.pt")
    onnx = export_onnx(ckpt, work / "detnet59.onnx")
    calib = work / "calib59"
    calib.mkdir()
    for i, img in enumerate(_images(16, seed=20, size=(512, 512))):
        cv2.imwrite(str(calib / f"{i}.png"), img.transpose(1, 2, 0))
    calib_set = make_calib_set(calib, work / "set59.txt", num=16, min_images=1)
    batch = (1, 8, 8)
    median = {}
    for precision in ("fp32", "fp16", "int8"):
        kw = {"calib": calib_set} if precision == "int8" else {}
        engine = _build(onnx, work / f"detnet59_{precision}.engine", precision, batch=batch, **kw)
        backend = TensorRTBackend(engine)
        record = benchmark(backend, BenchOptions(batches=(8,), iterations=100, warmup=2.0, end_to_end=False),
                           machine=False)
        median[precision] = record["results"][0]["gpu_ms"]["compute"]["median"]
    assert median["int8"] < median["fp16"] < median["fp32"], median


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_camera_loop_through_the_pinned_input_slots(fp16_engine, tmp_path, cuda_graph: bool) -> None:
    """The camera loop over the real engine letterboxes into its two page-locked input slots
    (alternating, H2D from each, graphs replayed from either) and finds what the copying path finds."""
    import cv2

    from detnet_trt.apps.camera import CameraOptions, open_source, run_loop
    from detnet_trt.apps.camera.sinks import Sink
    from detnet_trt.core.config import PostprocessConfig
    from detnet_trt.runtime.backends.tensorrt import TensorRTBackend
    from detnet_trt.runtime.detector import Detector

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(10):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 256, (96 + 8 * i, 160, 3), dtype=np.uint8))

    class Collect(Sink):
        def __init__(self) -> None:
            self.dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def write(self, result) -> None:
            d = result.detections
            self.dets.append((d.boxes.copy(), d.scores.copy(), d.class_ids.copy()))

    def run(backend: TensorRTBackend) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        sink = Collect()
        with open_source(str(folder)) as src:
            run_loop(Detector(backend, PostprocessConfig(conf=0.01)), src, [sink], CameraOptions(log_interval=None))
        return sink.dets

    with TensorRTBackend(fp16_engine, cuda_graph=cuda_graph) as backend:
        slots = backend.host_input_slots(1)
        assert slots is not None and not np.shares_memory(slots[0], slots[1])
        got = run(backend)

    class Copying(TensorRTBackend):
        def host_input_slots(self, batch: int):
            return None

    with Copying(fp16_engine, cuda_graph=cuda_graph) as backend:
        want = run(backend)
    assert len(got) == len(want) == 10
    for (b1, s1, c1), (b2, s2, c2) in zip(got, want):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-6)
        np.testing.assert_allclose(b1, b2, rtol=0, atol=1e-4)
