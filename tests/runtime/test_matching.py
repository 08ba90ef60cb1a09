"""runtime.matching: the one-to-one detection matcher of ``compare`` and ``build --verify``."""

import numpy as np
import pytest

from detnet_trt.runtime.matching import match_detections
from detnet_trt.runtime.postprocess import Detections


def _dets(boxes, scores, classes):
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(classes, np.int32))


def test_match_detections_rules():
    a = _dets([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 1, 2])
    b = _dets([[0, 0, 10, 11], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8, 0.7, 0.6], [0, 0, 2, 0])
    pairs = match_detections(a, b, 0.5)
    # b0 -> a0 (same class, IoU 10/11); b1 has the wrong class; b2 -> a2; b3 duplicates a0: unmatched
    assert [(i, j) for i, j, _ in pairs] == [(0, 0), (2, 2)]
    assert pairs[0][2] == pytest.approx(100 / 110)
    assert match_detections(a, Detections.empty()) == []
    assert match_detections(Detections.empty(), a) == []
    assert len(match_detections(a, a)) == 3


def test_higher_score_takes_the_box_first():
    a = _dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1])
    b = _dets([[1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0.95, 0.5, 0.7], [0, 0, 2])
    # b0 (highest score) takes a0 though b1 overlaps it better; b2 has another class
    assert [(i, j) for i, j, _ in match_detections(a, b)] == [(0, 0)]


def test_threshold_is_inclusive_and_default_half():
    a = _dets([[0, 0, 10, 10]], [0.9], [0])
    b = _dets([[0, 0, 10, 20]], [0.9], [0])  # IoU exactly 0.5
    assert len(match_detections(a, b)) == 1
    assert match_detections(a, b, 0.51) == []
