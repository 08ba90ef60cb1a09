"""Property-based tests (hypothesis) of the letterbox (``detnet_trt.runtime.letterbox``): for any
frame and input size, the geometry fits the frame inside the input, the pixels land where the
geometry says, boxes round-trip between frame and input pixels, and ``to_frame`` never leaves the
frame."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detnet_trt.runtime.letterbox import PAD_VALUE, Letterboxer, letterbox, letterbox_geometry

SETTINGS = settings(max_examples=80, deadline=None)
sides = st.integers(1, 400)
input_sides = st.integers(8, 256)


def _region(info, input_hw):
    """The resized frame's rows and columns inside the input, as letterbox_into fills them."""
    ih, iw = input_hw
    nh = min(ih, max(1, round(info.orig_h * info.scale)))
    nw = min(iw, max(1, round(info.orig_w * info.scale)))
    return nh, nw


@SETTINGS
@given(sides, sides, input_sides, input_sides)
def test_geometry_fits_the_frame_centred_in_the_input(fh: int, fw: int, ih: int, iw: int) -> None:
    info = letterbox_geometry((fh, fw), (ih, iw))
    assert info.scale > 0 and (info.orig_h, info.orig_w) == (fh, fw)
    nh, nw = _region(info, (ih, iw))
    assert info.pad_x >= 0 and info.pad_x + nw <= iw
    assert info.pad_y >= 0 and info.pad_y + nh <= ih
    # the aspect ratio is kept: one side fills the input (up to rounding), the other fits
    assert nh == ih or nw == iw
    assert abs(fh * info.scale - nh) <= 0.5 + 1e-6 or nh == 1
    assert abs(fw * info.scale - nw) <= 0.5 + 1e-6 or nw == 1
    # centred: the padding on the two sides differs by at most one pixel
    assert abs((iw - nw - info.pad_x) - info.pad_x) <= 1
    assert abs((ih - nh - info.pad_y) - info.pad_y) <= 1


@SETTINGS
@given(st.integers(1, 120), st.integers(1, 120), st.integers(8, 96), st.integers(8, 96),
       st.integers(0, 255), st.sampled_from(["nchw", "nhwc"]))
def test_pixels_land_where_the_geometry_says(fh: int, fw: int, ih: int, iw: int, value: int, layout: str) -> None:
    """A flat frame of one value fills exactly the region the geometry names; the rest is padding."""
    value = value if value != PAD_VALUE else PAD_VALUE + 1
    frame = np.full((fh, fw, 3), value, np.uint8)
    batch, info = letterbox(frame, (ih, iw), layout)
    img = batch[0] if layout == "nhwc" else batch[0].transpose(1, 2, 0)
    assert img.shape == (ih, iw, 3) and img.dtype == np.uint8
    nh, nw = _region(info, (ih, iw))
    inside = np.zeros((ih, iw), bool)
    inside[info.pad_y : info.pad_y + nh, info.pad_x : info.pad_x + nw] = True
    assert (img[inside] == value).all()
    assert (img[~inside] == PAD_VALUE).all()


@SETTINGS
@given(sides, sides, input_sides, input_sides, st.data())
def test_boxes_round_trip_between_frame_and_input(fh: int, fw: int, ih: int, iw: int, data: st.DataObject) -> None:
    info = letterbox_geometry((fh, fw), (ih, iw))
    m = data.draw(st.integers(0, 8))
    xs = data.draw(st.lists(st.floats(0, fw), min_size=2 * m, max_size=2 * m))
    ys = data.draw(st.lists(st.floats(0, fh), min_size=2 * m, max_size=2 * m))
    boxes = np.zeros((m, 4), np.float32)
    if m:
        x, y = np.sort(np.reshape(xs, (m, 2)), 1), np.sort(np.reshape(ys, (m, 2)), 1)
        boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(np.float32)
    back = info.to_frame(info.to_input(boxes))
    assert back.shape == boxes.shape and back.dtype == np.float32
    tol = 1e-4 * max(fh, fw) + 1e-3  # float32 arithmetic on coordinates up to 400 / scale
    np.testing.assert_allclose(back, boxes, atol=tol)
    # the frame's corners land on the corners of the resized region (rounded to whole pixels)
    corners = info.to_input(np.array([[0, 0, fw, fh]], np.float32))[0]
    nh, nw = _region(info, (ih, iw))
    want = [info.pad_x, info.pad_y, info.pad_x + nw, info.pad_y + nh]
    if nh > 1 and nw > 1:  # a 1-pixel side is clamped up from less than half a pixel
        np.testing.assert_allclose(corners, want, atol=0.5 + 1e-3)


@SETTINGS
@given(sides, sides, input_sides, input_sides,
       st.lists(st.floats(-1e5, 1e5, width=32), min_size=4, max_size=4 * 8).filter(lambda v: len(v) % 4 == 0))
def test_to_frame_stays_inside_the_frame(fh: int, fw: int, ih: int, iw: int, coords: list[float]) -> None:
    """Any box the network returns, even far outside the input, comes back inside the frame."""
    info = letterbox_geometry((fh, fw), (ih, iw))
    out = info.to_frame(np.asarray(coords, np.float32).reshape(-1, 4))
    assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= fw).all()
    assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= fh).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 90), st.integers(1, 90), st.integers(0, 2**32 - 1)), min_size=1, max_size=6),
       st.sampled_from(["nchw", "nhwc"]))
def test_a_reused_buffer_keeps_nothing_of_earlier_frames(shapes: list[tuple[int, int, int]], layout: str) -> None:
    """One Letterboxer filled frame after frame gives, each time, what a fresh letterbox gives."""
    lb = Letterboxer((48, 64), layout, max_batch=2)
    for h, w, seed in shapes:
        frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        batch, infos = lb.fill([frame])
        fresh, info = letterbox(frame, (48, 64), layout)
        np.testing.assert_array_equal(batch, fresh)
        assert infos[0] == info
