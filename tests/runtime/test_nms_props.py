"""Property-based tests (hypothesis) of NMS (``detnet_trt.runtime.nms``), for every implementation
(the dispatching ``batched_nms``, the NumPy one and OpenCV's): what is kept is a subset of the input
in score order, no two kept boxes of a class overlap above the threshold, every dropped box was
dropped by a kept one, classes never interact, and the result does not depend on the input order."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detnet_trt.runtime.nms import batched_nms, box_iou, nms

pp = importlib.import_module("detnet_trt.runtime.nms")
IMPLS = {"dispatch": batched_nms, "numpy": pp._batched_nms_numpy}
if pp._HAVE_CV2_NMS:
    IMPLS["cv2"] = pp._batched_nms_cv2
SETTINGS = settings(max_examples=60, deadline=None)
EPS = 1e-5  # float32 IoU arithmetic (OpenCV) against float64 here


@st.composite
def candidates(draw: st.DrawFn, max_n: int = 40, ncls: int = 3, unique_scores: bool = False):
    """Boxes on a small canvas (so they overlap often), some of zero width or height."""
    n = draw(st.integers(0, max_n))
    xy = draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 30), st.integers(0, 30)),
                       min_size=n, max_size=n))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in xy], np.float32).reshape(n, 4)
    boxes += draw(st.sampled_from([0.0, 0.25, 0.5]))  # not only whole pixels
    if unique_scores:
        scores = np.array(draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True)), np.float32)
        scores /= 10_000
    else:  # ties are common in real score maps (quantized scores): keep them
        scores = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)), np.float32) / 20
    cls = np.array(draw(st.lists(st.integers(0, ncls - 1), min_size=n, max_size=n)), np.int32)
    return boxes, scores, cls


def _near_threshold(boxes: np.ndarray, thr: float) -> bool:
    """Whether some pair's IoU is within rounding of the threshold (float32 and float64 may then
    decide differently, and so may two implementations)."""
    b = boxes.astype(np.float64)
    d = np.abs(box_iou(b, b) - thr)
    if float(thr * 4).is_integer():  # 0, 0.5, 1: exact in float32 too, so an equal IoU is equal in both
        d = d[d > 0]
    return bool((d < 1e-4).any())


thresholds = st.sampled_from([0.0, 0.1, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0])


@pytest.mark.parametrize("impl", sorted(IMPLS))
@SETTINGS
@given(candidates(), thresholds)
def test_kept_boxes_are_a_sorted_subset_with_no_overlap_above_the_threshold(impl, cand, thr) -> None:
    boxes, scores, cls = cand
    keep = IMPLS[impl](boxes, scores, cls, thr) if len(scores) else batched_nms(boxes, scores, cls, thr)
    assert keep.dtype == np.int64 and keep.ndim == 1
    assert len(set(keep.tolist())) == len(keep)  # no index twice
    assert ((keep >= 0) & (keep < len(scores))).all()  # a subset of the input
    assert (np.diff(scores[keep]) <= 0).all()  # highest score first
    # ties keep their input order
    for a, b in zip(keep[:-1], keep[1:]):
        if scores[a] == scores[b]:
            assert a < b
    iou = box_iou(boxes[keep].astype(np.float64), boxes[keep].astype(np.float64))
    same = cls[keep][:, None] == cls[keep][None, :]
    np.fill_diagonal(same, False)
    assert not (same & (iou > thr + EPS)).any()


@pytest.mark.parametrize("impl", sorted(IMPLS))
@SETTINGS
@given(candidates(), thresholds)
def test_every_dropped_box_was_suppressed_by_a_kept_box_of_its_class(impl, cand, thr) -> None:
    boxes, scores, cls = cand
    if not len(scores):
        return
    keep = IMPLS[impl](boxes, scores, cls, thr)
    kept = set(keep.tolist())
    pos = {int(k): i for i, k in enumerate(keep)}
    b64 = boxes.astype(np.float64)
    for j in range(len(scores)):
        if j in kept:
            continue
        iou = box_iou(b64[j : j + 1], b64[keep])[0]
        # a kept box of the same class, ranked before j, overlapping it above the threshold
        before = np.array([scores[k] > scores[j] or (scores[k] == scores[j] and k < j) for k in keep], bool)
        hit = (cls[keep] == cls[j]) & before & (iou > thr - EPS)
        assert hit.any(), (j, pos)


@pytest.mark.parametrize("impl", sorted(IMPLS))
@SETTINGS
@given(candidates(ncls=4), thresholds)
def test_classes_never_suppress_each_other(impl, cand, thr) -> None:
    """Class-aware NMS is the union of one NMS per class."""
    boxes, scores, cls = cand
    if not len(scores) or (impl == "numpy" and _near_threshold(boxes, thr)):
        return
    got = set(IMPLS[impl](boxes, scores, cls, thr).tolist())
    want: set[int] = set()
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        want |= set(idx[nms(boxes[idx], scores[idx], thr)].tolist())
    assert got == want


@pytest.mark.parametrize("impl", sorted(IMPLS))
@SETTINGS
@given(candidates(unique_scores=True), thresholds, st.randoms(use_true_random=False))
def test_the_input_order_does_not_matter_when_scores_differ(impl, cand, thr, rnd) -> None:
    boxes, scores, cls = cand
    if not len(scores):
        return
    perm = np.arange(len(scores))
    rnd.shuffle(perm)
    a = IMPLS[impl](boxes, scores, cls, thr)
    b = perm[IMPLS[impl](boxes[perm], scores[perm], cls[perm], thr)]
    np.testing.assert_array_equal(a, b)


@SETTINGS
@given(candidates(), thresholds)
def test_implementations_agree(cand, thr) -> None:
    boxes, scores, cls = cand
    if not len(scores) or _near_threshold(boxes, thr):
        return
    results = {name: f(boxes, scores, cls, thr).tolist() for name, f in IMPLS.items()}
    assert len({tuple(r) for r in results.values()}) == 1, results
