"""The batched tracker (``Tracker.update_many``: one step for a frame of each of several streams)
against one independent tracker per stream: the same detections, ids and events, frame by frame.

The streams are random crowds (boxes close enough that tracks compete, so the assignment solver
runs), with missed frames, low scores, empty frames, classes, and streams that skip steps, come in
any order, start late, end early or come twice in one call.
"""

from __future__ import annotations

import numpy as np
import pytest

from detnet_trt.apps.camera import tracking
from detnet_trt.apps.camera.tracking import StreamTrackers, Tracker, TrackerConfig, TrackUpdate
from detnet_trt.runtime.postprocess import Detections


def crowd(rng: np.random.Generator, frames: int, dtype: type = np.float32) -> list[Detections]:
    """One stream: objects moving close to each other, some frames missed, some low-scoring, clutter."""
    n = int(rng.integers(3, 12))
    xy = rng.uniform(0, 100, (n, 2))
    v = rng.uniform(-4, 4, (n, 2))
    wh = rng.uniform(20, 50, (n, 2))
    out = []
    for f in range(frames):
        seen = rng.random(n) > 0.15
        p = xy[seen] + v[seen] * f
        boxes = np.concatenate([p, p + wh[seen]], axis=1) + rng.normal(0, 2.0, (int(seen.sum()), 4))
        scores = np.where(rng.random(boxes.shape[0]) < 0.2, rng.uniform(0.1, 0.5), rng.uniform(0.5, 1.0, boxes.shape[0]))
        k = int(rng.integers(0, 3))
        c = rng.uniform(0, 220, (k, 2))
        boxes = np.concatenate([boxes, np.concatenate([c, c + rng.uniform(10, 30, (k, 2))], axis=1)])
        scores = np.concatenate([scores, rng.uniform(0.05, 0.6, k)])
        if rng.random() < 0.05:
            boxes, scores = boxes[:0], scores[:0]
        order = np.argsort(-scores)
        out.append(Detections(boxes[order].astype(dtype), scores[order].astype(dtype),
                              rng.integers(0, 2, order.size).astype(np.int32)))
    return out


def same(a: TrackUpdate, b: TrackUpdate) -> None:
    np.testing.assert_array_equal(a.detections.boxes, b.detections.boxes)
    np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
    np.testing.assert_array_equal(a.detections.class_ids, b.detections.class_ids)
    np.testing.assert_array_equal(a.track_ids, b.track_ids)
    assert a.events == b.events


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("class_aware", [False, True])
def test_one_step_for_all_streams_equals_one_tracker_per_stream(seed: int, class_aware: bool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    config = TrackerConfig(buffer=int(rng.integers(2, 12)), class_aware=class_aware)
    n_streams = int(rng.integers(2, 7))
    videos = {s: crowd(rng, int(rng.integers(20, 60)), np.float64 if s == 1 else np.float32)
              for s in rng.permutation(12)[:n_streams].tolist()}
    solver = {"calls": 0}
    real = tracking._linear_assignment

    def counted(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        solver["calls"] += 1
        return real(cost)

    monkeypatch.setattr(tracking, "_linear_assignment", counted)
    alone = {s: Tracker(config, high=0.5) for s in videos}
    batched = Tracker(config, high=0.5)
    at = dict.fromkeys(videos, 0)
    start = {s: int(rng.integers(0, 10)) for s in videos}  # some streams start late
    step = 0
    while any(at[s] < len(v) for s, v in videos.items()):
        live = [s for s, v in videos.items() if at[s] < len(v) and step >= start[s] and rng.random() > 0.2]
        rng.shuffle(live)
        if live and rng.random() < 0.1 and at[live[0]] + 1 < len(videos[live[0]]):
            live.append(live[0])  # one stream twice in a call: its frames in turn
        frames = []
        for s in live:
            frames.append((s, videos[s][at[s]]))
            at[s] += 1
        for (s, d), got in zip(frames, batched.update_many(frames), strict=True):
            same(got, alone[s].update(d))
        step += 1
    for s in videos:
        assert batched.frame_of(s) == alone[s].frame == len(videos[s]) - 1
        assert batched.started(s) == alone[s].started() and batched.confirmed_in(s) == alone[s].n_confirmed
        mine = [t for t in batched.tracks if t.stream == s]
        assert [(t.track_id, t.box, t.lost, t.mean) for t in mine] == [(t.track_id, t.box, t.lost, t.mean)
                                                                        for t in alone[s].tracks]
    assert solver["calls"] > 0  # tracks competed: the per-stream solving ran
    for s in sorted(videos)[:2]:  # one stream's source ends: only its tracks end
        assert batched.finish(s) == alone[s].finish()
    rest = batched.finish()
    assert rest == [e for s in sorted(videos)[2:] for e in alone[s].finish()]
    assert batched.tracks == []


def test_a_streams_ids_are_its_own_and_never_match_another_streams_boxes() -> None:
    t = Tracker(high=0.5)
    box = Detections(np.array([[0, 0, 20, 20]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int32))
    u = t.update_many([(0, box), (3, box)])
    assert [x.ids_list() for x in u] == [[1], [1]]
    assert [x.ids_list() for x in t.update_many([(3, box), (0, box)])] == [[1], [1]]
    assert t.streams == [0, 3] and t.started(3) == 1 and t.started(1) == 0 and t.frame_of(1) == -1
    with pytest.raises(ValueError, match="stream index"):
        t.update_many([(-1, box)])


def test_stream_trackers_finish_a_stream_then_the_rest() -> None:
    st = StreamTrackers(TrackerConfig(), high=0.5, streams=3)
    box = Detections(np.array([[0, 0, 20, 20]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int32))
    st.update_many([(0, box), (1, box)])
    ended = st.finish([1])
    assert list(ended) == [1] and [e.track_id for e in ended[1]] == [1]
    st.update_many([(0, box)])
    assert st.finish([1]) == {1: []}  # again: nothing left to end
    # alive: now, or when the stream ended
    assert st.stats() == {"0": {"tracks": 1, "alive": 1}, "1": {"tracks": 1, "alive": 1}, "2": {"tracks": 0, "alive": 0}}
    rest = st.finish()
    assert {k: [e.track_id for e in v] for k, v in rest.items()} == {0: [1], 1: [], 2: []}


def test_pair_iou_equals_box_iou_bit_for_bit() -> None:
    from detnet_trt.runtime.nms import box_iou

    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 50, (7, 4)), rng.uniform(0, 50, (9, 4))
    a[:, 2:] += a[:, :2]
    b[:, 2:] = b[:, :2] + rng.uniform(-5, 20, (9, 2))  # some inverted: zero area
    b[0] = a[0]
    b[1] = [3, 3, 3, 3]
    rows, cols = np.repeat(np.arange(7), 9), np.tile(np.arange(9), 7)
    assert np.array_equal(tracking._pair_iou(a.T, b.T, rows, cols, positive=False).reshape(7, 9), box_iou(a, b))
    ok = (b[:, 2] - b[:, 0] > 1) & (b[:, 3] - b[:, 1] > 1)
    sub = ok[cols]
    assert np.array_equal(tracking._pair_iou(a.T, b.T, rows[sub], cols[sub]), box_iou(a, b).reshape(-1)[sub])
