"""``--track`` through the camera loop on a synthetic video with known trajectories.

The video has three bright squares: two that cross (their blobs merge into one while they
overlap: an occlusion) and one that enters from the left edge half way. A stand-in backend
detects each bright connected component; the JSON lines' track ids are scored against the known
trajectories with py-motmetrics. Also: the ids in the drawn labels and the recording, the CLI flags.
"""

from __future__ import annotations

import json
import time

import cv2
import motmetrics as mm  # the dev extra
import numpy as np
import pytest

from detnet_trt.apps.camera import (
    CameraOptions,
    LiveSource,
    format_summary,
    open_source,
    run_camera,
    run_multi_camera,
    run_multi_loop,
)
from detnet_trt.apps.camera.sinks import Sink
from detnet_trt.apps.camera.tracking import TrackerConfig
from detnet_trt.apps.visualize import class_color, draw_detections
from detnet_trt.cli import build_parser
from detnet_trt.cli.camera import camera_options
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.backends.base import Backend
from detnet_trt.runtime.detector import Detector
from detnet_trt.runtime.postprocess import Detections

H, W, N = 240, 320, 60
SIDE = 24


def truth(i: int) -> dict[int, tuple[int, int]]:
    """Top-left corners of the squares in frame ``i``: 1 and 2 cross around frame 30, 3 enters at 30."""
    out = {1: (10 + 5 * i, 60), 2: (290 - 5 * i, 70)}
    if i >= 30:
        out[3] = (-20 + 4 * (i - 30), 170)
    return {k: v for k, v in out.items() if v[0] + SIDE > 0 and v[0] < W}


def frame(i: int) -> np.ndarray:
    img = np.full((H, W, 3), 30, np.uint8)
    for x, y in truth(i).values():
        img[y : y + SIDE, max(0, x) : max(0, x + SIDE)] = 255
    return img


def write_scene(path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (W, H))
    for i in range(N):
        writer.write(frame(i))
    writer.release()


class ComponentBackend(Backend):
    """Top-K outputs: the bounding box of every bright connected component (score 0.9, class 0)."""

    name = "components"

    def __init__(self) -> None:
        super().__init__(ModelMeta("components", ["square"], (H, W), layout="nchw", topk=8))

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n, k = images.shape[0], self.meta.topk
        boxes, scores = np.zeros((n, k, 4), np.float32), np.zeros((n, k), np.float32)
        for b in range(n):
            mask = (images[b].max(axis=0) > 200).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for j, (x, y, w, h, _area) in enumerate(stats[1:count][:k]):
                boxes[b, j] = [x, y, x + w, y + h]
                scores[b, j] = 0.9
        return {"boxes": boxes, "scores": scores, "class_ids": np.zeros((n, k), np.int32)}


def _score(records: list[dict]) -> dict[str, float]:
    acc = mm.MOTAccumulator(auto_id=True)
    for r in records:
        gt = truth(r["source_frame"])
        gt_xywh = np.array([[max(0, x), y, min(W, x + SIDE) - max(0, x), SIDE] for x, y in gt.values()], float)
        tracked = [d for d in r["detections"] if d["track_id"] is not None]
        hyp = np.array([d["box"] for d in tracked], float).reshape(-1, 4)
        hyp[:, 2:] -= hyp[:, :2]
        acc.update(list(gt), [d["track_id"] for d in tracked], mm.distances.iou_matrix(gt_xywh.reshape(-1, 4), hyp, 0.5))
    metrics = ["num_switches", "num_fragmentations", "idf1", "num_unique_objects"]
    row = mm.metrics.create().compute(acc, metrics=metrics)
    return {m: float(row[m].iloc[0]) for m in metrics}


@pytest.mark.parametrize("overlap", [True, False])
def test_track_ids_follow_the_squares_through_the_crossing(tmp_path, overlap: bool) -> None:
    video, out, rec = tmp_path / "scene.mp4", tmp_path / "dets.jsonl", tmp_path / "rec.mp4"
    write_scene(video)
    summary = run_camera(ComponentBackend(), str(video),
                         CameraOptions(show=False, jsonl=out, record=rec, overlap=overlap, log_interval=None,
                                       track=TrackerConfig()), PostprocessConfig(conf=0.5), handle_signals=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == N and all("track_id" in d for r in records for d in r["detections"])
    s = _score(records)
    assert s["num_unique_objects"] == 3
    assert s["num_switches"] == 0, s
    # while their blobs are merged (frames 26-30) the merged box matches at most one of 1 and 2 at
    # IoU 0.5: gaps in the detections themselves (3 fragmentations); none of the tracker's making
    assert s["num_fragmentations"] <= 3, s
    assert s["idf1"] >= 0.9, s
    ids = {d["track_id"] for r in records for d in r["detections"]} - {None}
    assert ids == {1, 2, 3}  # three objects, three ids: no track was lost and started again
    assert summary["tracking"] == {"0": {"tracks": 3, "alive": 3}}
    assert "tracks: stream 0: 3, 3 alive at the end" in format_summary(summary)
    assert summary["conf"] == 0.5  # the user's threshold, not the tracker's lowered one
    cap = cv2.VideoCapture(str(rec))
    assert cap.read()[0]
    cap.release()


def test_each_stream_has_its_own_tracker_in_a_batched_run(tmp_path) -> None:
    """Two streams of the same scene and one of a single square, batched: each stream's ids count
    from 1 and follow its own squares (the same scored result as a single-source run)."""
    one = tmp_path / "one.mp4"
    writer = cv2.VideoWriter(str(one), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (W, H))
    for i in range(N):
        img = np.full((H, W, 3), 30, np.uint8)
        img[100 : 100 + SIDE, 20 + 3 * i : 20 + 3 * i + SIDE] = 255
        writer.write(img)
    writer.release()
    write_scene(tmp_path / "scene.mp4")
    out = tmp_path / "dets.jsonl"
    sources = [("a", str(tmp_path / "scene.mp4")), ("b", str(one)), ("c", str(tmp_path / "scene.mp4"))]
    summary = run_multi_camera(ComponentBackend(), sources,
                               CameraOptions(show=False, jsonl=out, log_interval=None, track=TrackerConfig()),
                               handle_signals=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for name in ("a", "c"):
        mine = [r for r in records if r["stream"] == name]
        assert len(mine) == N
        s = _score(mine)
        assert s["num_switches"] == 0 and s["idf1"] >= 0.9, (name, s)
        assert {d["track_id"] for r in mine for d in r["detections"]} - {None} == {1, 2, 3}
    assert {d["track_id"] for r in records if r["stream"] == "b" for d in r["detections"]} == {1}
    assert summary["tracking"] == {"a": {"tracks": 3, "alive": 3}, "b": {"tracks": 1, "alive": 1},
                                   "c": {"tracks": 3, "alive": 3}}


def test_without_track_records_have_no_track_ids(tmp_path) -> None:
    video, out = tmp_path / "scene.mp4", tmp_path / "dets.jsonl"
    write_scene(video)
    summary = run_camera(ComponentBackend(), str(video), CameraOptions(show=False, jsonl=out, max_frames=5, log_interval=None),
                         handle_signals=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all("track_id" not in d for r in records for d in r["detections"])
    assert "tracking" not in summary


def test_the_overlay_labels_and_colours_boxes_by_track() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    dets = Detections(np.array([[10, 40, 50, 90], [120, 40, 170, 90]], np.float32), np.array([0.9, 0.8], np.float32),
                      np.zeros(2, np.int32))
    plain = draw_detections(img, dets, ["square"])
    tracked = draw_detections(img, dets, ["square"], track_ids=[7, None])
    assert tuple(int(v) for v in tracked[89, 30]) == class_color(7)  # the bottom edge: the track's colour
    assert tuple(int(v) for v in tracked[89, 140]) == class_color(0)  # untracked: the class colour
    # "#7 square 0.90" is a wider label than "square 0.90"
    label_row = 40 - 8
    assert np.count_nonzero(tracked[label_row, :110].any(axis=-1)) > np.count_nonzero(plain[label_row, :110].any(axis=-1))


def test_cli_track_flags_make_the_tracker_config() -> None:
    parser = build_parser()
    args = parser.parse_args(["camera", "--model", "m.onnx", "--source", "0", "--track", "--track-low", "0.2",
                              "--track-buffer", "12"])
    opts = camera_options(args)
    assert opts.track == TrackerConfig(low=0.2, buffer=12)
    assert camera_options(parser.parse_args(["camera", "--model", "m.onnx", "--source", "0"])).track is None


@pytest.mark.parametrize("argv", [["--track-low", "1.5"], ["--track-buffer", "-1"], ["--track-buffer", "200000"]])
def test_cli_track_flags_are_range_checked(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["camera", "--model", "m.onnx", "--source", "0", "--track", *argv])
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


class _EndLog(Sink):
    """Frames written per stream, and each tracks_ended call with how many frames of every stream were through."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.ended: list[tuple[str | None, list[int], str, dict[str, int]]] = []

    def write(self, result) -> None:
        self.frames[result.stream] = self.frames.get(result.stream, 0) + 1

    def tracks_ended(self, stream, stream_index, events, class_names, reason="stopped") -> None:
        self.ended.append((stream, [e.track_id for e in events], reason, dict(self.frames)))


def test_a_stream_that_ends_mid_run_ends_its_tracks_then(tmp_path) -> None:
    """A 20-frame and a 60-frame video: the short stream's tracks end after its last frame, while
    the long one is still running; the long one's when it ends."""
    scene = tmp_path / "scene.mp4"
    write_scene(scene)
    short = tmp_path / "short.mp4"
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (W, H))
    for i in range(20):
        writer.write(frame(i))
    writer.release()
    config, post = TrackerConfig().resolve(PostprocessConfig(conf=0.5))
    srcs = [open_source(str(p), threaded=True) for p in (short, scene)]
    log = _EndLog()
    try:
        summary = run_multi_loop(Detector(ComponentBackend(), post), srcs, ["short", "long"], [log],
                                 CameraOptions(log_interval=None, track=config))
    finally:
        for s in srcs:
            s.close()
    assert [(name, ids, reason) for name, ids, reason, _ in log.ended] == [("short", [1, 2], "stream ended"),
                                                                          ("long", [1, 2, 3], "stream ended")]
    seen_then = log.ended[0][3]
    assert seen_then["short"] == 20 and seen_then["long"] < N  # the long stream was still running
    assert log.ended[1][3] == {"short": 20, "long": N}
    assert summary["tracking"] == {"short": {"tracks": 2, "alive": 2}, "long": {"tracks": 3, "alive": 3}}


def test_tracks_alive_when_the_run_is_stopped_end_as_stopped() -> None:
    config, post = TrackerConfig().resolve(PostprocessConfig(conf=0.5))
    src = LiveSource(lambda: _Endless(), "endless", reconnect=False)
    log = _EndLog()
    try:
        run_multi_loop(Detector(ComponentBackend(), post), [src], ["cam"], [log],
                       CameraOptions(log_interval=None, track=config, duration=0.5))
    finally:
        src.close()
    assert log.frames["cam"] > 0
    assert [(name, ids, reason) for name, ids, reason, _ in log.ended] == [("cam", [1, 2], "stopped")]


class _Endless:
    """A camera that never ends: the scene's first frame, again and again (two squares)."""

    def read(self) -> tuple[bool, np.ndarray]:
        time.sleep(0.005)
        return True, frame(0)

    def isOpened(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def get(self, _prop: int) -> float:
        return 0.0
