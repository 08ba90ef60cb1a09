"""The camera loops over the TensorRT backend on the fake GPU (tests/trt_fakes.py): frames are
letterboxed straight into the engine's two page-locked input slots (no host copy of the input),
a slot is never written while it is being inferred, the detections are those of the copying
path, and close() frees both slots."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from camera_fakes import write_video
from trt_fakes import install, write_engine

from detnet_trt.apps.camera import CameraOptions, open_source, run_loop
from detnet_trt.apps.camera.sinks import Sink
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.runtime import letterbox as letterbox_mod
from detnet_trt.runtime.backends.tensorrt import TensorRTBackend
from detnet_trt.runtime.detector import Detector

POST = PostprocessConfig(conf=0.01, iou=0.5)


class _Scores(Sink):
    def __init__(self) -> None:
        self.scores: list[list[float]] = []

    def write(self, result) -> None:
        self.scores.append([round(float(s), 6) for s in result.detections.scores])


def _run(backend: TensorRTBackend, video, overlap: bool = True) -> list[list[float]]:
    sink = _Scores()
    with open_source(str(video)) as src:
        s = run_loop(Detector(backend, POST), src, [sink], CameraOptions(log_interval=None, overlap=overlap))
    assert s["frames"] == len(sink.scores)
    return sink.scores


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def test_camera_run_fills_the_pinned_slots_without_host_copies(tmp_path, monkeypatch) -> None:
    gpu = install(monkeypatch)
    video = write_video(tmp_path / "in.mp4", 12)
    backend = TensorRTBackend(write_engine(tmp_path)).open()
    slots = backend.host_input_slots(1)
    assert slots is not None and len(slots) == 2 and all(s.shape == (1, 3, 16, 16) for s in slots)
    addresses = [_address(s) for s in slots]
    assert addresses[0] != addresses[1]

    busy: set[int] = set()  # slot addresses being inferred
    inferred: list[int] = []
    overlaps: list[int] = []
    real_infer, real_lb, real_copyto = TensorRTBackend._infer, letterbox_mod.letterbox_into, np.copyto
    copies: list[tuple[int, ...]] = []

    def infer(self, images):
        a = _address(images)
        busy.add(a)
        inferred.append(a)
        try:
            time.sleep(0.005)  # long enough for the pre-processing thread to run meanwhile
            return real_infer(self, images)
        finally:
            busy.discard(a)

    def letterbox_into(frame, out, *args, **kwargs):
        a = _address(out)
        if a in busy:
            overlaps.append(a)
        return real_lb(frame, out, *args, **kwargs)

    def copyto(dst, src, *args, **kwargs):
        copies.append(np.shape(src))
        return real_copyto(dst, src, *args, **kwargs)

    monkeypatch.setattr(TensorRTBackend, "_infer", infer)
    monkeypatch.setattr(letterbox_mod, "letterbox_into", letterbox_into)
    monkeypatch.setattr(np, "copyto", copyto)
    got = _run(backend, video)
    monkeypatch.setattr(np, "copyto", real_copyto)
    assert copies == []  # every batch was one of the engine's own slots: no host copy
    assert overlaps == []  # never letterboxed into the slot being inferred
    assert len(inferred) == 12 and set(inferred) == set(addresses)
    assert all(a != b for a, b in zip(inferred, inferred[1:]))  # the two slots alternate

    # the copying path (no slots lent) gives the same detections
    monkeypatch.setattr(TensorRTBackend, "host_input_slots", lambda self, batch: None)
    copies.clear()
    monkeypatch.setattr(np, "copyto", copyto)
    want = _run(backend, video)
    monkeypatch.setattr(np, "copyto", real_copyto)
    assert len(copies) == 12  # one host copy per frame there
    assert got == want and sum(len(s) for s in want) > 0

    pinned = len(gpu.pinned)
    backend.close()
    assert gpu.pinned == set() and pinned == len(gpu.pinned) + 5  # two input slots and three outputs


@pytest.mark.parametrize("overlap", [True, False])
def test_multi_stream_batch_uses_the_slots(tmp_path, monkeypatch, overlap: bool) -> None:
    from detnet_trt.apps.camera.multi import run_multi_loop

    install(monkeypatch)
    videos = [write_video(tmp_path / f"in{i}.mp4", 6) for i in range(2)]
    backend = TensorRTBackend(write_engine(tmp_path)).open()
    addresses = {_address(s) for s in backend.host_input_slots(2) or []}
    seen: list[int] = []
    real_infer = TensorRTBackend._infer

    def infer(self, images):
        seen.append(_address(images))
        return real_infer(self, images)

    monkeypatch.setattr(TensorRTBackend, "_infer", infer)
    sources = [open_source(str(v), threaded=True) for v in videos]
    run_multi_loop(Detector(backend, POST), sources, ["a", "b"], [],
                   CameraOptions(log_interval=None, overlap=overlap))
    for s in sources:
        s.close()
    assert seen and (set(seen) <= addresses) is overlap
    backend.close()


def test_slots_outside_the_batch_range_fall_back_to_own_buffers(tmp_path, monkeypatch) -> None:
    from detnet_trt.apps.camera.loop import slot_letterboxers

    install(monkeypatch)
    with TensorRTBackend(write_engine(tmp_path)) as backend:
        lbs = slot_letterboxers(Detector(backend, POST), 6)  # the engine takes at most 4
        own = backend.host_input_slots(4) or []
        assert len(lbs) == 2 and not any(np.shares_memory(lb.buffer, s) for lb in lbs for s in own)
        lbs = slot_letterboxers(Detector(backend, POST), 2)
        assert [np.shares_memory(lb.buffer, s) for lb, s in zip(lbs, own)] == [True, True]


def test_slots_are_lent_without_the_lock(tmp_path, monkeypatch) -> None:
    """host_input_slots() returns arrays, not a held lock: another thread may infer meanwhile."""
    install(monkeypatch)
    with TensorRTBackend(write_engine(tmp_path)) as backend:
        slots = backend.host_input_slots(1)
        assert slots is not None
        slots[1][...] = 7
        out: list[dict[str, np.ndarray]] = []
        t = threading.Thread(target=lambda: out.append(backend.infer(slots[1])))
        t.start()
        t.join(5)
        assert out and out[0]["scores"][0, 0] == pytest.approx(7 / 255)
