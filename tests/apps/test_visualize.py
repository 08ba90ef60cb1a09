"""Annotated pictures: each label sits above its box (inside it at the top of the image), whole
inside the image, and drawn after every box, so no box line crosses a label."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detnet_trt.apps.visualize import class_color, draw_detections, label_layout, label_rect
from detnet_trt.runtime.postprocess import Detections


def _dets(boxes, scores, classes) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(classes, np.int32))


def _mask(img: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    return (img == np.array(color, np.uint8)).all(-1)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 639), st.integers(0, 479), st.integers(1, 200), st.integers(4, 40), st.integers(1, 4),
       st.integers(1, 640))
def test_label_rect_is_above_the_box_when_it_fits_else_inside_and_always_whole(x1, y1, lw, lh, thickness, w):
    h = 480
    x0, y0, xe, ye = label_rect((x1, y1, x1 + 50, y1 + 50), (lw, lh), (w, h), thickness)
    assert (xe - x0, ye - y0) == (lw, lh)
    if lw <= w:
        assert x0 >= 0 and xe <= w  # never off the image sideways
    assert y0 >= 0 and ye <= h
    half = (thickness + 1) // 2
    if y1 - half - lh >= 0:  # room above: it rests on the top line, not over it
        assert ye == y1 - half
    elif y1 + half + 1 + lh <= h:  # inside, under the top line
        assert y0 == y1 + half + 1
    # wherever it goes, it does not cover the box's top line unless the image leaves no room
    covers_line = y0 < y1 + half + 1 and ye > y1 - half
    assert not covers_line or h - lh < y1 + half + 1


def _rect(dets, names, wh, index=0):
    return next(r for i, _, _, _, r in label_layout(wh, dets, names) if i == index)


def _text(region: np.ndarray) -> np.ndarray:
    return (region < 60).all(-1)  # the black label text (class colours keep one channel >= 220)


def test_a_box_at_the_top_gets_its_label_inside_under_the_top_line():
    img = np.full((200, 300, 3), 255, np.uint8)
    dets = _dets([[20, 0, 200, 150]], [0.9], [1])
    out = draw_detections(img, dets, ["a", "bird"])
    color = class_color(1)
    x0, y0, x1, y1 = _rect(dets, ["a", "bird"], (300, 200))
    assert y0 >= 2 and x0 >= 19  # under the top line (rows 0-1 at thickness 2), inside the box
    assert _mask(out[0:2, 22:200], color).mean() > 0.9  # the top line is whole
    assert _text(out[y0:y1, x0:x1]).any() and _mask(out[y0:y1, x0:x1], color).any()


def test_a_box_lower_down_gets_its_label_above_resting_on_the_top_line():
    img = np.full((200, 300, 3), 255, np.uint8)
    dets = _dets([[20, 80, 200, 150]], [0.9], [2])
    out = draw_detections(img, dets, None)
    x0, y0, x1, y1 = _rect(dets, None, (300, 200))
    assert y1 == 79 and x0 == 19  # ends where the 2-pixel top line (rows 79-81) begins
    assert _text(out[y0:y1, x0:x1]).any()
    assert not _text(out[82:150, 22:199]).any(), "label text inside the box"


@pytest.mark.parametrize("box", [[250, 100, 299, 180], [0, 190, 40, 199], [280, 0, 299, 10], [-30, -20, 10, 5]])
def test_labels_near_the_edges_stay_whole_in_the_image(box):
    """The label's whole text is drawn: as many text pixels as the same label in the open."""
    h, w = 200, 300
    dets = _dets([box], [0.87], [0])
    out = draw_detections(np.full((h, w, 3), 255, np.uint8), dets, ["person"])
    x0, y0, x1, y1 = _rect(dets, ["person"], (w, h))
    assert x0 >= 0 and x1 <= w and y0 >= 0 and y1 <= h
    # the same picture inside a larger one (same font scale: the shorter side stays under 320)
    big = np.full((h + 100, w + 300, 3), 255, np.uint8)
    moved = _dets([[box[0] + 150, box[1] + 50, box[2] + 150, box[3] + 50]], [0.87], [0])
    ref = draw_detections(big, moved, ["person"])
    rx0, ry0, rx1, ry1 = _rect(moved, ["person"], (w + 300, h + 100))
    n, n_ref = int(_text(out[y0:y1, x0:x1]).sum()), int(_text(ref[ry0:ry1, rx0:rx1]).sum())
    assert n > 20 and n == n_ref


def test_a_label_wider_than_the_image_is_shrunk_to_fit():
    dets = _dets([[2, 30, 60, 60]], [0.5], [0])
    names = ["a very long class name indeed"]
    out = draw_detections(np.full((80, 90, 3), 255, np.uint8), dets, names)
    x0, y0, x1, y1 = _rect(dets, names, (90, 80))
    assert x0 >= 0 and x1 <= 90 and _text(out[y0:y1, x0:x1]).any()


def test_no_box_line_is_drawn_over_a_label():
    """A second box whose top line runs through the first box's label leaves the label intact."""
    img = np.full((240, 320, 3), 255, np.uint8)
    first = [40, 100, 220, 200]
    dets0 = _dets([first], [0.9], [0])
    x0, y0, x1, y1 = _rect(dets0, None, (320, 240))
    second = [0, (y0 + y1) // 2, 300, 230]  # its top line runs right through the first label
    dets = _dets([first, second], [0.9, 0.6], [0, 3])
    out = draw_detections(img, dets, None)
    label = out[y0:y1, x0:x1]
    assert not _mask(label, class_color(3)).any(), "the other box's line crosses the label"
    np.testing.assert_array_equal(label, draw_detections(img, dets0, None)[y0:y1, x0:x1])


def test_the_best_detection_label_is_on_top():
    img = np.full((200, 300, 3), 255, np.uint8)
    # two boxes with the same top-left corner: their labels overlap; the higher score's is drawn last
    dets = _dets([[50, 100, 150, 180], [50, 100, 160, 190]], [0.4, 0.95], [0, 4])
    order = [i for i, *_ in label_layout((300, 200), dets)]
    assert order == [0, 1]
    out = draw_detections(img, dets, None)
    x0, y0, x1, y1 = _rect(dets, None, (300, 200), index=1)
    region = out[y0:y1, x0:x1]
    assert _mask(region, class_color(4)).any() and not _mask(region, class_color(0)).any()


def test_tracked_boxes_take_their_track_colour_and_id_label():
    img = np.full((200, 300, 3), 255, np.uint8)
    dets = _dets([[20, 80, 120, 150], [150, 80, 250, 150]], [0.9, 0.8], [1, 1])
    layout = {i: text for i, text, *_ in label_layout((300, 200), dets, ["a", "bird"], 2, [7, None])}
    assert layout == {0: "#7 bird 0.90", 1: "bird 0.80"}
    out = draw_detections(img, dets, ["a", "bird"], track_ids=[7, None])
    assert _mask(out[80:82, 25:115], class_color(7)).mean() > 0.9  # the track's colour
    assert _mask(out[80:82, 155:245], class_color(1)).mean() > 0.9  # untracked: the class colour
