"""The batcher: one frame per running stream, at most the timeout after the first, and splits."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from camera_fakes import BlobBackend, blob_frame

from detnet_trt.apps.camera.batcher import Batcher, infer_batch
from detnet_trt.apps.camera.sources import Frame, FrameSource


class _Stub(FrameSource):
    """A threaded-source stand-in: frames pushed by the test, ``connected`` / ``done`` set by it."""

    def __init__(self, name: str, frames: int = 0) -> None:
        super().__init__(name)
        self.queue = [self._frame(i) for i in range(frames)]
        self.up, self.done = True, False

    @staticmethod
    def _frame(i: int) -> Frame:
        return Frame(blob_frame(i), i, time.perf_counter(), time.time())

    def push(self, i: int) -> None:
        self.queue.append(self._frame(i))
        self._notify()

    def poll(self):
        return self.queue.pop(0) if self.queue else None

    @property
    def ended(self) -> bool:
        return self.done and not self.queue

    @property
    def connected(self) -> bool:
        return self.up


class _Never:
    def is_set(self) -> bool:
        return False


def test_a_full_batch_closes_at_once_in_stream_order() -> None:
    a, b = _Stub("a", 2), _Stub("b", 2)
    batcher = Batcher([a, b], timeout=5.0)
    t0 = time.perf_counter()
    got = batcher.gather(_Never())
    assert time.perf_counter() - t0 < 1.0
    assert [(i, f.index) for i, f in got] == [(0, 0), (1, 0)]
    assert [(i, f.index) for i, f in batcher.gather(_Never())] == [(0, 1), (1, 1)]
    assert batcher.taken == [2, 2] and 0 <= batcher.host_s < 1.0


def test_waits_at_most_the_timeout_for_a_stream_without_a_frame() -> None:
    a, b = _Stub("a", 1), _Stub("b", 0)
    batcher = Batcher([a, b], timeout=0.2)
    t0 = time.perf_counter()
    got = batcher.gather(_Never())
    took = time.perf_counter() - t0
    assert [i for i, _ in got] == [0] and 0.18 <= took < 1.5
    assert batcher.host_s < took / 2  # the wait is not counted as the batcher's host time


def test_a_frame_arriving_within_the_timeout_joins_the_batch() -> None:
    a, b = _Stub("a", 1), _Stub("b", 0)
    batcher = Batcher([a, b], timeout=2.0)
    threading.Timer(0.05, b.push, args=(0,)).start()
    t0 = time.perf_counter()
    got = batcher.gather(_Never())
    assert [i for i, _ in got] == [0, 1] and time.perf_counter() - t0 < 1.5  # woken, not timed out


def test_a_reconnecting_stream_is_not_waited_for() -> None:
    a, b = _Stub("a", 1), _Stub("b", 0)
    b.up = False
    batcher = Batcher([a, b], timeout=5.0)
    t0 = time.perf_counter()
    assert [i for i, _ in batcher.gather(_Never())] == [0] and time.perf_counter() - t0 < 1.0


def test_ended_streams_and_max_frames_finish_the_run() -> None:
    a, b = _Stub("a", 5), _Stub("b", 1)
    b.done = True
    batcher = Batcher([a, b], timeout=5.0, max_frames=2)
    assert [i for i, _ in batcher.gather(_Never())] == [0, 1]
    assert [i for i, _ in batcher.gather(_Never())] == [0]  # b ended: not waited for
    assert batcher.finished() and batcher.gather(_Never()) is None  # a reached max_frames
    assert len(a.queue) == 3  # frames past the limit are not taken


def test_a_stop_ends_a_waiting_gather() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    t0 = time.perf_counter()
    assert Batcher([_Stub("a")], timeout=1.0).gather(stop) is None and time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("max_batch, calls", [(None, 1), (5, 1), (2, 3), (1, 5)])
def test_infer_batch_splits_at_the_backend_maximum(max_batch, calls) -> None:
    rng = np.random.default_rng(0)
    batch = np.full((5, 3, 64, 64), 30, np.uint8)
    for i in range(5):  # a different bright square in every image
        y, x = rng.integers(0, 48, 2)
        batch[i, :, y : y + 8, x : x + 8] = 255
    ref = BlobBackend().infer(batch)
    backend = BlobBackend(max_batch=max_batch)
    out, n = infer_batch(backend, batch)
    assert n == calls == backend.calls and sum(backend.batch_sizes) == 5
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])  # every image's outputs, in order
