"""NMS and post-processing, checked against a plain reference NMS and OpenCV's NMSBoxesBatched."""

from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest

from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS
from detnet_trt.runtime.letterbox import LetterboxInfo
from detnet_trt.runtime.nms import batched_nms, nms
from detnet_trt.runtime.postprocess import Detections, postprocess, postprocess_image

# the module (the package re-exports the function `postprocess` under the same name)
pp = importlib.import_module("detnet_trt.runtime.nms")
HAVE_CV2_NMS = hasattr(cv2.dnn, "NMSBoxesBatched")


def _ref_iou(a: list[float], b: list[float]) -> float:
    aw, ah = max(a[2] - a[0], 0.0), max(a[3] - a[1], 0.0)
    bw, bh = max(b[2] - b[0], 0.0), max(b[3] - b[1], 0.0)
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def ref_batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, thr: float) -> list[int]:
    """The textbook greedy algorithm, one pair at a time, in Python floats (double)."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))  # sorted() is stable
    bl = boxes.astype(np.float64).tolist()
    suppressed = [False] * len(scores)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1 :]:
            if not suppressed[j] and class_ids[j] == class_ids[i] and _ref_iou(bl[i], bl[j]) > thr:
                suppressed[j] = True
    return keep


def make_candidates(n: int, ncls: int, seed: int, img: float = 512.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector-like candidates: clusters of jittered boxes around a few objects."""
    rng = np.random.default_rng(seed)
    nobj = max(1, n // 25)
    ctr = rng.uniform(0, img, (nobj, 2))
    wh = rng.uniform(8, img / 3, (nobj, 2))
    j = rng.integers(0, nobj, n)
    c = ctr[j] + rng.normal(0, 1, (n, 2)) * wh[j] * 0.1
    s = wh[j] * np.exp(rng.normal(0, 0.15, (n, 2)))
    boxes = np.concatenate([c - s / 2, c + s / 2], 1).astype(np.float32)
    cls = np.where(rng.random(n) < 0.7, j % ncls, rng.integers(0, ncls, n)).astype(np.int32)
    scores = rng.random(n).astype(np.float32)
    return boxes, scores, cls


IMPLS = {"dispatch": batched_nms, "numpy": pp._batched_nms_numpy}
if HAVE_CV2_NMS:
    IMPLS["cv2"] = pp._batched_nms_cv2


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("seed,n,ncls", [(0, 300, 1), (1, 300, 5), (2, 1000, 80), (3, 50, 3)])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_batched_nms_matches_reference(impl: str, seed: int, n: int, ncls: int, thr: float) -> None:
    boxes, scores, cls = make_candidates(n, ncls, seed)
    got = IMPLS[impl](boxes, scores, cls, thr)
    want = ref_batched_nms(boxes, scores, cls, thr)
    assert got.dtype == np.int64
    assert got.tolist() == want
    assert 0 < len(want) < n  # the case actually suppresses something


@pytest.mark.skipif(not HAVE_CV2_NMS, reason="OpenCV without cv2.dnn.NMSBoxesBatched")
@pytest.mark.parametrize("seed", [0, 7])
def test_batched_nms_matches_opencv(seed: int) -> None:
    boxes, scores, cls = make_candidates(1000, 20, seed)
    xywh = boxes.copy()
    xywh[:, 2:] -= boxes[:, :2]
    ocv = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, cls, 0.0, 0.5)).reshape(-1)
    ours = pp._batched_nms_numpy(boxes, scores, cls, 0.5)
    assert sorted(ours.tolist()) == sorted(ocv.tolist())
    assert np.all(np.diff(scores[ours]) <= 0)  # highest score first


def test_nms_single_class_matches_reference() -> None:
    boxes, scores, _ = make_candidates(400, 1, 11)
    assert nms(boxes, scores, 0.45).tolist() == ref_batched_nms(boxes, scores, np.zeros(400, int), 0.45)


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_empty_input_gives_empty_output(impl: str) -> None:
    out = IMPLS[impl](np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32), 0.5)
    assert out.shape == (0,) and out.dtype == np.int64
    assert nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5).shape == (0,)


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_edge_cases(impl: str) -> None:
    f = IMPLS[impl]
    same = np.array([[10, 10, 50, 50]] * 3, np.float32)
    # identical boxes of different classes never suppress each other
    assert sorted(f(same, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 2]), 0.5).tolist()) == [0, 1, 2]
    # equal scores keep input order; the first of identical boxes wins
    assert f(same, np.full(3, 0.5, np.float32), np.zeros(3, int), 0.5).tolist() == [0]
    # IoU exactly at the threshold is not suppressed (suppress only when IoU > threshold)
    half = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU = 50 / 100 = 0.5
    assert f(half, np.array([0.9, 0.8], np.float32), np.zeros(2, int), 0.5).tolist() == [0, 1]
    assert f(half, np.array([0.9, 0.8], np.float32), np.zeros(2, int), 0.49).tolist() == [0]
    # negative coordinates and zero-area boxes follow the reference
    odd = np.array([[-40, -40, 10, 10], [-38, -41, 9, 12], [5, 5, 5, 9], [5, 5, 5, 9], [0, 0, 3, 3]], np.float32)
    sc = np.array([0.5, 0.9, 0.7, 0.8, 0.1], np.float32)
    cls = np.array([0, 0, 1, 1, 1])
    assert f(odd, sc, cls, 0.5).tolist() == ref_batched_nms(odd, sc, cls, 0.5) == [1, 3, 2, 4]


def _info() -> LetterboxInfo:
    # a 200 x 100 (h x w) frame letterboxed into 100 x 100: scale 0.5, padded 25 px left/right
    return LetterboxInfo(scale=0.5, pad_x=25, pad_y=0, orig_h=200, orig_w=100)


def test_postprocess_image_threshold_nms_maxdet_and_undo() -> None:
    boxes = np.array([[25, 0, 75, 50], [26, 1, 75, 50], [30, 60, 40, 70], [0, 0, 100, 100]], np.float32)
    scores = np.array([0.9, 0.8, 0.3, 0.1], np.float32)
    cls = np.array([0, 0, 2, 1], np.int32)
    det = postprocess_image(boxes, scores, cls, _info(), conf=0.25, iou=0.5, max_det=10)
    assert det.class_ids.tolist() == [0, 2]  # 2nd suppressed by NMS, 4th below conf
    np.testing.assert_allclose(det.boxes[0], [0, 0, 100, 100])  # (x - 25) / 0.5
    np.testing.assert_allclose(det.boxes[1], [10, 120, 30, 140])
    assert det.boxes.dtype == np.float32 and det.class_ids.dtype == np.int32
    # max_det keeps the best; a box sticking out of the frame is clipped to it
    det = postprocess_image(boxes, scores, cls, _info(), conf=0.0, iou=0.5, max_det=2)
    assert det.scores.tolist() == pytest.approx([0.9, 0.3])
    det = postprocess_image(boxes[3:], scores[3:], cls[3:], _info(), conf=0.0)
    np.testing.assert_allclose(det.boxes[0], [0, 0, 100, 200])
    assert len(postprocess_image(boxes, scores, cls, None, conf=0.95)) == 0


def test_postprocess_both_output_contracts_and_empty() -> None:
    n, k = 2, 5
    boxes = np.tile(np.array([[10, 10, 20, 20]], np.float32), (n, k, 1))
    scores = np.zeros((n, k), np.float32)
    scores[0, 0] = 0.9
    cls = np.zeros((n, k), np.int32)
    host = dict(zip(HOST_NMS_OUTPUTS, (boxes, scores, cls)))
    dets = postprocess(host, None, conf=0.5)
    assert [len(d) for d in dets] == [1, 0]
    assert isinstance(dets[1], Detections) and dets[1].boxes.shape == (0, 4)
    num = np.array([1, 0], np.int32)
    graph = dict(zip(GRAPH_NMS_OUTPUTS, (boxes, scores, cls, num)))
    dets = postprocess(graph, [_info(), None], conf=0.5)
    assert [len(d) for d in dets] == [1, 0]
    np.testing.assert_allclose(dets[0].boxes[0], [0, 20, 0, 40])  # x clipped at 0 in the frame
    with pytest.raises(KeyError, match="match neither"):
        postprocess({"logits": scores})


def test_detections_to_list() -> None:
    det = Detections(np.array([[1.234, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.array([1], np.int32))
    assert det.to_list(["a", "b"]) == [{"box": [1.23, 2.0, 3.0, 4.0], "score": 0.5, "class_id": 1, "class_name": "b"}]
    assert "class_name" not in det.to_list()[0]
    assert Detections.empty().to_list() == []


def test_postprocess_with_a_config_and_the_detector_takes_one() -> None:
    from detnet_trt.core.config import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, PostprocessConfig
    from detnet_trt.runtime.detector import Detector
    from detnet_trt.runtime.postprocess import postprocess_with

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 80, (2, 30, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 20, (2, 30, 2)).astype(np.float32)], -1)
    host = dict(zip(HOST_NMS_OUTPUTS, (boxes, rng.uniform(0, 1, (2, 30)).astype(np.float32),
                                       rng.integers(0, 3, (2, 30)).astype(np.int32))))
    post = PostprocessConfig(conf=0.3, iou=0.4, max_det=5)
    for a, b in zip(postprocess_with(host, None, post), postprocess(host, None, 0.3, 0.4, 5)):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
    # the scalar ops default to the one set of defaults
    default = PostprocessConfig()
    assert (default.conf, default.iou, default.max_det) == (DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET)
    assert [len(d) for d in postprocess(host)] == [len(d) for d in postprocess_with(host, None, default)]

    class _Meta:
        input_size, layout = (32, 32), "nchw"

    class _Backend:
        meta = _Meta()

    assert Detector(_Backend(), post).post is post  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PostprocessConfig"):
        Detector(_Backend(), 0.25)  # type: ignore[arg-type]  # the old (conf, iou, max_det) form
