"""Letterbox: geometry, content, undo, buffer reuse, no per-frame allocation, input errors."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from detnet_trt.core.errors import InputError
from detnet_trt.runtime.letterbox import (
    PAD_VALUE,
    Letterboxer,
    LetterboxInfo,
    letterbox,
    letterbox_geometry,
    letterbox_into,
)


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "frame_hw,input_hw,scale,pad",
    [
        ((720, 1280), (128, 128), 0.1, (0, 28)),  # landscape: pad top/bottom
        ((200, 100), (100, 100), 0.5, (25, 0)),  # portrait: pad left/right
        ((32, 32), (128, 128), 4.0, (0, 0)),  # upscale, no padding
        ((128, 128), (128, 128), 1.0, (0, 0)),
    ],
)
def test_geometry(frame_hw, input_hw, scale, pad) -> None:
    info = letterbox_geometry(frame_hw, input_hw)
    assert info.scale == pytest.approx(scale)
    assert (info.pad_x, info.pad_y) == pad
    assert (info.orig_h, info.orig_w) == frame_hw


def test_nhwc_content_and_padding() -> None:
    frame = _frame(720, 1280)
    out = np.zeros((128, 128, 3), np.uint8)
    info = letterbox_into(frame, out, "nhwc")
    assert (info.pad_x, info.pad_y) == (0, 28)
    expected = cv2.resize(frame, (128, 72), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(out[28:100], expected)
    assert np.all(out[:28] == PAD_VALUE) and np.all(out[100:] == PAD_VALUE)


def test_nchw_equals_transposed_nhwc_and_channels_are_kept() -> None:
    frame = _frame(300, 500, seed=2)
    frame[..., 0] = 10  # blue channel constant: BGR order must survive unchanged
    a = np.empty((1, 96, 160, 3), np.uint8)
    b = np.empty((1, 3, 96, 160), np.uint8)
    ia = Letterboxer((96, 160), "nhwc", 1, buffer=a).fill([frame])[1][0]
    ib = Letterboxer((96, 160), "nchw", 1, buffer=b).fill([frame])[1][0]
    assert ia == ib
    assert np.array_equal(a[0].transpose(2, 0, 1), b[0])
    assert np.all(b[0, 0, ib.pad_y : 96 - ib.pad_y, ib.pad_x : 160 - ib.pad_x] == 10)


def test_same_size_frame_is_copied_exactly() -> None:
    frame = _frame(64, 96)
    batch, info = letterbox(frame, (64, 96), "nhwc")
    assert np.array_equal(batch[0], frame) and info.scale == 1.0


def test_to_frame_undoes_to_input_and_clips() -> None:
    info = letterbox_geometry((720, 1280), (128, 128))
    boxes = np.array([[100, 50, 400, 300], [0, 0, 1280, 720]], np.float32)
    np.testing.assert_allclose(info.to_frame(info.to_input(boxes)), boxes, atol=1e-3)
    outside = info.to_frame(np.array([[-10, 0, 200, 200]], np.float32))  # off the image, in the padding
    np.testing.assert_allclose(outside, [[0, 0, 1280, 720]])
    assert info.to_frame(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_letterboxer_reuses_its_buffer_and_supplied_buffer() -> None:
    lb = Letterboxer((128, 128), "nchw", max_batch=3)
    b1, infos = lb.fill([_frame(720, 1280, 0), _frame(480, 640, 1)])
    assert b1.shape == (2, 3, 128, 128) and len(infos) == 2
    b2, _ = lb.fill([_frame(100, 100, 2)])
    assert np.shares_memory(b1, b2) and np.shares_memory(b2, lb.buffer)
    own = np.empty((2, 128, 128, 3), np.uint8)
    batch, _ = Letterboxer((128, 128), "nhwc", 2, buffer=own).fill([_frame(50, 80)])
    assert np.shares_memory(batch, own)
    with pytest.raises(InputError, match="buffer"):
        Letterboxer((128, 128), "nhwc", 2, buffer=np.empty((2, 3, 128, 128), np.uint8))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_batch_path_allocates_nothing_per_frame(layout: str) -> None:
    """No NumPy/OpenCV-Python allocation of frame size while filling the buffer (cv2's Python
    bindings allocate result arrays through NumPy, so tracemalloc sees them too)."""
    frames = [_frame(720, 1280, i) for i in range(4)]
    lb = Letterboxer((256, 256), layout, max_batch=4)
    lb.fill(frames)  # warm up
    tracemalloc.start()
    try:
        lb.fill(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024, peak  # one 256 x 144 x 3 resize alone would be 110 KB


@pytest.mark.parametrize(
    "frame,match",
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10), np.uint8), "H x W x 3"),
        (np.zeros((10, 10, 4), np.uint8), "H x W x 3"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ([[1, 2, 3]], "list"),
    ],
)
def test_bad_frames(frame, match: str) -> None:
    with pytest.raises(InputError, match=match):
        letterbox(frame, (64, 64))


def test_bad_batches_and_layouts() -> None:
    lb = Letterboxer((64, 64), "nhwc", max_batch=2)
    with pytest.raises(InputError, match="1 to 2"):
        lb.fill([_frame(10, 10)] * 3)
    with pytest.raises(InputError, match="1 to 2"):
        lb.fill([])
    with pytest.raises(InputError, match="layout"):
        Letterboxer((64, 64), "chw")
    assert isinstance(lb.fill([_frame(10, 10)])[1][0], LetterboxInfo)
