"""Property-based tests (hypothesis) of host post-processing (``detnet_trt.runtime.postprocess``):
for any candidates, thresholds and letterbox, what comes out is above the threshold, at most
``max_det``, the prefix of the unlimited result, inside the frame, typed as documented, the same
per image in a batch as alone, and the in-graph-NMS contract never reads past ``num_dets``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS
from detnet_trt.runtime.letterbox import letterbox_geometry
from detnet_trt.runtime.nms import batched_nms
from detnet_trt.runtime.postprocess import postprocess, postprocess_image

SETTINGS = settings(max_examples=60, deadline=None)
INPUT = (64, 96)  # the model input (h, w) the candidates live in


@st.composite
def candidates(draw: st.DrawFn, k: int | None = None):
    """Top-K candidates in input pixels: boxes partly outside the input, scores in [0, 1]."""
    k = draw(st.integers(0, 30)) if k is None else k
    xy = draw(st.lists(st.tuples(st.floats(-20, 110), st.floats(-20, 80), st.floats(0, 50), st.floats(0, 50)),
                       min_size=k, max_size=k))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in xy], np.float32).reshape(k, 4)
    scores = np.array(draw(st.lists(st.floats(0, 1, width=32), min_size=k, max_size=k)), np.float32)
    cls = np.array(draw(st.lists(st.integers(0, 4), min_size=k, max_size=k)), np.int32)
    return boxes, scores, cls


frames = st.tuples(st.integers(1, 500), st.integers(1, 500))
confs = st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.9, 1.0])
ious = st.sampled_from([0.3, 0.5, 0.7])


@SETTINGS
@given(candidates(), frames, confs, ious, st.integers(1, 40))
def test_one_image(cand, frame_hw, conf, iou, max_det) -> None:
    boxes, scores, cls = cand
    info = letterbox_geometry(frame_hw, INPUT)
    dets = postprocess_image(boxes, scores, cls, info, conf, iou, max_det)
    assert dets.boxes.dtype == np.float32 and dets.scores.dtype == np.float32 and dets.class_ids.dtype == np.int32
    assert dets.boxes.shape == (len(dets), 4) and dets.class_ids.shape == (len(dets),)
    assert len(dets) <= max_det
    assert (dets.scores >= conf).all()
    assert (np.diff(dets.scores) <= 0).all()
    fh, fw = frame_hw
    assert (dets.boxes[:, 0::2] >= 0).all() and (dets.boxes[:, 0::2] <= fw).all()
    assert (dets.boxes[:, 1::2] >= 0).all() and (dets.boxes[:, 1::2] <= fh).all()
    # the result is the threshold, then class-aware NMS, then the first max_det, mapped to the frame
    mask = scores >= conf
    keep = batched_nms(boxes[mask], scores[mask], cls[mask], iou)[:max_det] if mask.any() else np.zeros(0, int)
    np.testing.assert_array_equal(dets.scores, scores[mask][keep])
    np.testing.assert_array_equal(dets.class_ids, cls[mask][keep])
    np.testing.assert_array_equal(dets.boxes, info.to_frame(boxes[mask][keep]))
    # max_det only cuts: a larger one gives the same first rows
    more = postprocess_image(boxes, scores, cls, info, conf, iou, max_det + 10)
    np.testing.assert_array_equal(more.scores[: len(dets)], dets.scores)
    assert len(more) >= len(dets)


@SETTINGS
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(st.lists(candidates(k=12), min_size=n, max_size=n),
                                                     st.lists(st.one_of(st.none(), frames), min_size=n, max_size=n))),
       confs, ious, st.integers(1, 20))
def test_a_batch_is_each_image_alone(batch, conf, iou, max_det) -> None:
    cands, sizes = batch
    outputs = dict(zip(HOST_NMS_OUTPUTS, (np.stack([c[i] for c in cands]) for i in range(3))))
    infos = [letterbox_geometry(s, INPUT) if s is not None else None for s in sizes]
    got = postprocess(outputs, infos, conf, iou, max_det)
    assert len(got) == len(cands)
    for d, (b, s, c), info in zip(got, cands, infos):
        alone = postprocess_image(b, s, c, info, conf, iou, max_det)
        np.testing.assert_array_equal(d.boxes, alone.boxes)
        np.testing.assert_array_equal(d.scores, alone.scores)
        np.testing.assert_array_equal(d.class_ids, alone.class_ids)
        if info is None:  # input pixels kept: nothing clipped
            assert len(d) == 0 or np.isin(d.scores, s).all()


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 16), st.data(), confs, st.integers(1, 20), frames)
def test_in_graph_nms_outputs_never_read_past_num_dets(n, rows, data, conf, max_det, frame_hw) -> None:
    """Padded rows (beyond num_dets) hold garbage here: none of it may come out."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # num_dets as a model writes it, and out of range (negative, beyond the rows): read as 0 and all rows
    num = np.array([[data.draw(st.integers(-2, rows + 2))] for _ in range(n)], np.int32)
    boxes = rng.uniform(0, 60, (n, rows, 4)).astype(np.float32)
    boxes[..., 2:] += boxes[..., :2]
    scores = np.sort(rng.uniform(0, 1, (n, rows)).astype(np.float32), 1)[:, ::-1].copy()
    cls = rng.integers(0, 5, (n, rows)).astype(np.int32)
    for i in range(n):  # poison the padding: high scores, class 99
        scores[i, max(num[i, 0], 0) :] = 2.0
        cls[i, max(num[i, 0], 0) :] = 99
    outputs = dict(zip(GRAPH_NMS_OUTPUTS, (boxes, scores, cls, num)))
    info = letterbox_geometry(frame_hw, INPUT)
    got = postprocess(outputs, [info] * n, conf, 0.5, max_det)
    for i, d in enumerate(got):
        assert len(d) <= min(max(int(num[i, 0]), 0), max_det)
        assert (d.class_ids != 99).all() and (d.scores <= 1.0).all() and (d.scores >= conf).all()
        fh, fw = frame_hw
        assert (d.boxes[:, 0::2] <= fw).all() and (d.boxes[:, 1::2] <= fh).all() and (d.boxes >= 0).all()
