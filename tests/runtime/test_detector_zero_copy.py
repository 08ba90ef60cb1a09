"""Zero-copy input: a backend that lends its input memory gets each frame letterboxed once, straight
into that memory, and the detections are those of the copying path."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import InputError
from detnet_trt.runtime import letterbox as letterbox_mod
from detnet_trt.runtime.backends.ort import OnnxRuntimeBackend
from detnet_trt.runtime.detector import Detector
from detnet_trt.runtime.letterbox import Letterboxer


class LendingBackend(OnnxRuntimeBackend):
    """ONNX Runtime behind a lent input buffer, as the TensorRT backend lends its pinned one: records
    what ``_infer`` was given and whether the lend was held while it ran."""

    def __init__(self, path, max_batch: int) -> None:
        super().__init__(path)
        self.own = np.zeros(self.meta.input_shape(max_batch), np.uint8)  # stands in for pinned memory
        self.lock = threading.RLock()
        self.lent = 0
        self.seen: list[tuple[int, tuple[int, ...], bool]] = []  # (address, shape, lent while inferring)

    @contextlib.contextmanager
    def input_buffer(self, batch: int) -> Iterator[np.ndarray | None]:
        with self.lock:
            self.lent += 1
            try:
                yield self.own[:batch]
            finally:
                self.lent -= 1

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self.seen.append((images.__array_interface__["data"][0], images.shape, self.lent > 0))
        return super()._infer(images)


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (200 + 40 * i, 300 - 20 * i, 3), dtype=np.uint8) for i in range(5)]


def test_frames_are_letterboxed_once_into_the_backends_buffer(tiny_onnx, monkeypatch) -> None:
    writes: list[bool] = []
    real = letterbox_mod.letterbox_into

    def counting(frame, out, *args, **kwargs):
        writes.append(np.shares_memory(out, lender.own))
        return real(frame, out, *args, **kwargs)

    monkeypatch.setattr(letterbox_mod, "letterbox_into", counting)
    post = PostprocessConfig(conf=0.3, iou=0.5)
    frames = _frames()
    with LendingBackend(tiny_onnx, max_batch=2) as lender:
        got = Detector(lender, post, max_batch=2)(frames)
    assert writes == [True] * len(frames)  # one letterbox per frame, each into the lent memory
    base = lender.own.__array_interface__["data"][0]
    # every infer() ran on the lent memory itself (no host copy in between), while it was lent
    assert [(a, s[0], held) for a, s, held in lender.seen] == [(base, 2, True), (base, 2, True), (base, 1, True)]

    writes.clear()
    with OnnxRuntimeBackend(tiny_onnx) as plain:  # the copying path: the detector's own buffer
        want = Detector(plain, post, max_batch=2)(frames)
    assert writes == [False] * len(frames)
    assert len(got) == len(want) == len(frames)
    assert sum(len(d) for d in want) > 0
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_backends_without_a_buffer_lend_none(tiny_onnx) -> None:
    with OnnxRuntimeBackend(tiny_onnx) as be, be.input_buffer(2) as buf:
        assert buf is None


def test_fill_into_a_supplied_buffer_checks_it() -> None:
    lb = Letterboxer((64, 64), "nchw", max_batch=2)
    frame = np.full((48, 80, 3), 9, np.uint8)
    out = np.zeros((3, 3, 64, 64), np.uint8)
    batch, infos = lb.fill([frame, frame], out=out)
    assert np.shares_memory(batch, out) and batch.shape == (2, 3, 64, 64) and len(infos) == 2
    want, _ = Letterboxer((64, 64), "nchw", max_batch=2).fill([frame, frame])
    np.testing.assert_array_equal(batch, want)
    with pytest.raises(InputError, match=r"must be uint8 \(N, 3, 64, 64\)"):
        lb.fill([frame], out=np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="holds 1 to 1"):
        lb.fill([frame, frame], out=out[:1])
