"""TensorRTBackend's ordering and clean-up on a fake GPU (tests/trt_fakes.py): the non-blocking
stream, zero-copy input, CUDA graphs kept per batch size, a failed capture falling back to plain
enqueue, close() waiting for an inference in flight, a failed open releasing what it made, one
TensorRT logger per process. TensorRT's own behaviour is in the ``gpu`` tests."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from trt_fakes import install, write_engine

from detnet_trt.core.errors import InputError, ModelFileError
from detnet_trt.runtime.backends.tensorrt import TensorRTBackend
from detnet_trt.trt import cuda
from detnet_trt.trt.cuda import CudaError


def _engine(tmp_path, data: bytes | None = None, sha: bool = True):
    return write_engine(tmp_path, sha=sha) if data is None else write_engine(tmp_path, data, sha)


@pytest.fixture
def gpu(monkeypatch):
    return install(monkeypatch)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)


def _expected_scores(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).mean(axis=1) / 255.0).astype(np.float32)


def _assert_all_released(gpu) -> None:
    assert gpu.memory == {} and gpu.pinned == set(), "device or pinned memory left"
    assert gpu.graphs == set() and gpu.execs == {}, "CUDA graphs left"
    assert gpu.retained == 0 and gpu.pushed == 0, "CUDA context left retained or pushed"


def test_open_infer_close_releases_everything_in_order(gpu, tmp_path) -> None:
    backend = TensorRTBackend(_engine(tmp_path))
    with backend:
        assert gpu.stream_flags == [1]  # CU_STREAM_NON_BLOCKING
        assert gpu.pushed == 0 and gpu.retained == 1  # the context is pushed only around each call
        x = _images(2)
        out = backend.infer(x)
        np.testing.assert_allclose(out["scores"][:, 0], _expected_scores(x), rtol=1e-6)
        assert out["boxes"].shape == (2, 8, 4) and backend.gpu_timings() == {"h2d": 0.5, "compute": 0.5, "d2h": 0.5}
        gpu.events.clear()
    _assert_all_released(gpu)
    ev = gpu.events
    assert ev[0] == "stream synchronized" and ev[-1] == "context detached"  # nothing in flight when freeing
    assert ev.count("device memory freed") == 4
    backend.close()  # idempotent
    assert gpu.events.count("context detached") == 1


def test_input_buffer_is_not_copied_again(gpu, tmp_path, monkeypatch) -> None:
    copies: list[tuple[int, ...]] = []
    real = np.copyto

    def spy(dst, src, *args, **kwargs):
        copies.append(np.shape(src))
        return real(dst, src, *args, **kwargs)

    x = _images(2, seed=3)
    with TensorRTBackend(_engine(tmp_path)) as backend:
        monkeypatch.setattr(np, "copyto", spy)
        with backend.input_buffer(2) as buf:
            assert buf is not None and buf.shape == (2, 3, 16, 16) and buf.dtype == np.uint8
            buf[...] = x  # what the letterbox does
            out = backend.infer(buf)
        assert copies == []  # the pinned input was the batch: no host copy
        np.testing.assert_allclose(out["scores"][:, 0], _expected_scores(x), rtol=1e-6)
        backend.infer(x)  # a batch of its own is copied into the pinned input once
        assert copies == [(2, 3, 16, 16)]


def test_two_host_input_slots_alternate_under_cuda_graphs_without_host_copies(gpu, tmp_path, monkeypatch) -> None:
    """Both page-locked input slots are taken as they are (no host copy), and a graph captured while
    slot 0 was the input replays right from slot 1: the H2D copy is outside the graph."""
    copies: list[tuple[int, ...]] = []
    real = np.copyto
    monkeypatch.setattr(np, "copyto", lambda dst, src, *a, **k: (copies.append(np.shape(src)), real(dst, src, *a, **k)))
    with TensorRTBackend(_engine(tmp_path), cuda_graph=True) as backend:
        slots = backend.host_input_slots(2)
        assert slots is not None and not np.shares_memory(slots[0], slots[1])
        for i in range(4):
            x = _images(2, seed=10 + i)
            slots[i % 2][...] = x
            out = backend.infer(slots[i % 2])
            np.testing.assert_allclose(out["scores"][:, 0], _expected_scores(x), rtol=1e-6)
        x = _images(1, seed=20)
        slots[1][:1] = x
        np.testing.assert_allclose(backend.infer(slots[1][:1])["scores"][:, 0], _expected_scores(x), rtol=1e-6)
        assert copies == []
        assert gpu.launches[:4] == [("enqueue", 2), ("graph", 2), ("graph", 2), ("graph", 2)]
        assert len(gpu.pinned) == 5  # the input, its second slot, three outputs
        with pytest.raises(InputError, match="outside this engine's 1 to 4"):
            backend.host_input_slots(5)
    _assert_all_released(gpu)  # close() freed both slots


def test_cuda_graphs_per_batch_size_survive_alternating_batches(gpu, tmp_path) -> None:
    with TensorRTBackend(_engine(tmp_path), cuda_graph=True) as backend:
        for i, n in enumerate([1, 2, 1, 2, 4, 1, 4]):
            x = _images(n, seed=i)
            out = backend.infer(x)
            np.testing.assert_allclose(out["scores"][:, 0], _expected_scores(x), rtol=1e-6)  # this call's input
        assert gpu.launches == [("enqueue", 1), ("enqueue", 2), ("graph", 1), ("graph", 2), ("enqueue", 4),
                                ("graph", 1), ("graph", 4)]
        assert len(gpu.execs) == 3 and gpu.graphs == set()  # instantiated graphs kept, the graphs themselves freed
    _assert_all_released(gpu)


@pytest.mark.parametrize("how", ["enqueue", "invalidate"])
def test_failed_capture_warns_once_and_falls_back_to_enqueue(gpu, tmp_path, caplog, how: str) -> None:
    gpu.fail_capture = how
    with caplog.at_level(logging.WARNING), TensorRTBackend(_engine(tmp_path), cuda_graph=True) as backend:
        for i, n in enumerate([1, 1, 2, 1]):
            x = _images(n, seed=i)
            out = backend.infer(x)  # never raises: the work was done
            np.testing.assert_allclose(out["scores"][:, 0], _expected_scores(x), rtol=1e-6)
        assert gpu.events.count("capture begun") == gpu.events.count("capture ended") == 1  # tried once
        assert gpu.graphs == set() and gpu.execs == {}  # no partial graph left
        assert [kind for kind, _ in gpu.launches] == ["enqueue"] * 4
    warnings = [r for r in caplog.records if "CUDA graph capture failed" in r.getMessage()]
    assert len(warnings) == 1 and "plain enqueue" in warnings[0].getMessage()
    _assert_all_released(gpu)


def test_cuda_graph_capture_cleans_up_when_the_enqueue_raises(gpu) -> None:
    stream = cuda.Stream()

    def boom() -> bool:
        raise RuntimeError("no")

    with pytest.raises(cuda.GraphCaptureError, match="raised under capture: no"):
        cuda.CudaGraph(stream, boom)
    assert gpu.events == ["capture begun", "capture ended", "graph destroyed"] and gpu.graphs == set()


def test_close_waits_for_the_inference_in_flight(gpu, tmp_path) -> None:
    backend = TensorRTBackend(_engine(tmp_path)).open()
    gpu.kernel_gate = threading.Event()
    x = _images(2, seed=5)
    got: dict[str, object] = {}
    infer = threading.Thread(target=lambda: got.update(out=backend.infer(x)))
    infer.start()
    assert gpu.kernel_started.wait(10)
    closer = threading.Thread(target=backend.close)
    closer.start()
    time.sleep(0.2)
    assert closer.is_alive() and len(gpu.memory) == 4  # close() waits; the buffers are still there
    gpu.kernel_gate.set()
    infer.join(10)
    closer.join(10)
    np.testing.assert_allclose(got["out"]["scores"][:, 0], _expected_scores(x), rtol=1e-6)  # type: ignore[index]
    _assert_all_released(gpu)
    with pytest.raises(CudaError, match="not open"):
        backend._infer(x)  # the hook alone on a closed backend: a clear error, no crash


def test_closes_racing_inferences_never_break_one(gpu, tmp_path) -> None:
    """infer() holds the lock from its open check to its results: a close() on another thread falls
    before (the call opens the backend again, as every backend's infer does) or after, never between."""
    backend = TensorRTBackend(_engine(tmp_path))
    x = _images(2, seed=6)
    want = _expected_scores(x)
    errors: list[BaseException] = []
    done = threading.Event()

    def loop() -> None:
        try:
            for _ in range(200):
                np.testing.assert_allclose(backend.infer(x)["scores"][:, 0], want, rtol=1e-6)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)
        done.set()

    t = threading.Thread(target=loop)
    t.start()
    closes = 0
    while not done.is_set():
        backend.close()
        closes += 1
    t.join(30)
    backend.close()
    assert not errors, errors[0]
    assert closes > 1 and gpu.events.count("context detached") > 1  # it really was closed under the loop
    _assert_all_released(gpu)


def test_a_failed_open_releases_what_it_made(gpu, tmp_path, monkeypatch) -> None:
    foreign = _engine(tmp_path, data=b"another plan", sha=False)  # a sidecar that does not record the hash
    with pytest.raises(ModelFileError, match="could not deserialize the engine"):
        TensorRTBackend(foreign).open()
    _assert_all_released(gpu)

    made = []
    real = cuda.DeviceBuffer.ensure

    def third_fails(self, nbytes: int) -> bool:
        made.append(nbytes)
        if len(made) == 3:
            raise CudaError("allocating device memory failed: out of memory")
        return real(self, nbytes)

    monkeypatch.setattr(cuda.DeviceBuffer, "ensure", third_fails)
    backend = TensorRTBackend(_engine(tmp_path))
    with pytest.raises(CudaError, match="out of memory"):
        backend.open()
    assert not backend.is_open
    _assert_all_released(gpu)


def test_one_tensorrt_logger_per_process(gpu, tmp_path) -> None:
    path = _engine(tmp_path)
    for _ in range(3):
        with TensorRTBackend(path) as a, TensorRTBackend(path, verbose=True) as b:
            a.infer(_images(1))
            b.infer(_images(1))
    assert gpu.loggers == 1 and gpu.plugin_inits == 1
    from detnet_trt.trt.logger import get_logger

    assert get_logger().min_severity == 4  # VERBOSE once one backend asked for it
    _assert_all_released(gpu)
