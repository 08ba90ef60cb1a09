"""Window / JSON lines / video sinks of the camera loop."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest
from camera_fakes import CLASSES, blob_frame

from detnet_trt.apps.camera.sinks import (
    FrameResult,
    JsonLinesSink,
    VideoRecorder,
    WindowSink,
    display_available,
    make_sinks,
)
from detnet_trt.apps.camera.sources import Frame
from detnet_trt.core.errors import DetnetError, OutputExistsError
from detnet_trt.runtime.postprocess import Detections


def _result(i: int, size=(120, 160)) -> FrameResult:
    dets = Detections(np.array([[8, 40, 24, 56]], np.float32), np.array([0.9], np.float32), np.array([0], np.int32))
    frame = Frame(blob_frame(i, size), i, time.perf_counter(), 1700000000.0 + i, i / 30)
    return FrameResult(i, frame, dets, CLASSES)


def test_jsonl_records_are_flushed_per_frame(tmp_path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    sink.write(_result(0))
    sink.write(_result(1))
    lines = path.read_text().splitlines()  # readable before close: flushed
    assert len(lines) == 2
    rec = json.loads(lines[1])
    assert rec["frame"] == 1 and rec["timestamp"] == pytest.approx(1700000001.0)
    assert rec["pts"] == pytest.approx(1 / 30, abs=1e-6) and (rec["width"], rec["height"]) == (160, 120)
    assert rec["detections"] == [{"box": [8.0, 40.0, 24.0, 56.0], "score": 0.9, "class_id": 0, "class_name": "blob"}]
    sink.close()
    sink.close()  # idempotent


def test_a_multi_stream_record_names_its_stream_first() -> None:
    r = _result(3)
    assert "stream" not in r.record()  # a single-source run: records as before
    r.stream, r.stream_index = "door", 2
    rec = r.record()
    assert next(iter(rec)) == "stream" and rec["stream"] == "door" and rec["frame"] == 3


def test_outputs_are_not_overwritten_without_force(tmp_path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        JsonLinesSink(path)
    assert path.read_text() == "keep me"
    JsonLinesSink(path, force=True).close()
    assert path.read_text() == ""


def test_recorder_writes_playable_video_only_at_close(tmp_path) -> None:
    path = tmp_path / "rec.mp4"
    rec = VideoRecorder(path, fps=15)
    for i in range(7):
        rec.write(_result(i))
    rec.write(_result(7, size=(240, 320)))  # another size: resized to the first
    assert not path.exists()  # still a hidden partial file
    rec.close()
    assert not list(tmp_path.glob(".*partial*"))
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        assert img.shape == (120, 160, 3)
        n += 1
    assert n == 8 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(15)


def test_recorder_without_frames_writes_nothing(tmp_path) -> None:
    VideoRecorder(tmp_path / "none.mp4").close()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "env, expected",
    [({}, False), ({"DISPLAY": ":0"}, True), ({"WAYLAND_DISPLAY": "wayland-0"}, True)],
)
def test_display_available(monkeypatch, env, expected) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert display_available() is expected


def test_window_without_display_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DetnetError, match="needs a display.*--headless"):
        WindowSink()


def test_make_sinks_headless_by_default_without_display(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    sinks = make_sinks(jsonl=tmp_path / "a.jsonl", record=tmp_path / "a.mp4")
    assert [type(s).__name__ for s in sinks] == ["JsonLinesSink", "VideoRecorder"]
    for s in sinks:
        s.close()


def test_make_sinks_checks_all_outputs_first(tmp_path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        make_sinks(show=False, jsonl=tmp_path / "a.jsonl", record=tmp_path / "a.mp4")
    assert not (tmp_path / "a.jsonl").exists()


class _FakeGui:
    """Stands in for OpenCV's HighGUI calls (no display here)."""

    def __init__(self, keys, visible=1.0):
        self.keys, self.visible, self.shown = list(keys), visible, []

    def install(self, monkeypatch) -> None:
        from detnet_trt.apps.camera import sinks

        monkeypatch.setenv("DISPLAY", ":99")
        monkeypatch.setattr(sinks.cv2, "namedWindow", lambda *a: None)
        monkeypatch.setattr(sinks.cv2, "imshow", lambda title, img: self.shown.append(img.copy()))
        monkeypatch.setattr(sinks.cv2, "waitKey", lambda ms: self.keys.pop(0) if self.keys else -1)
        monkeypatch.setattr(sinks.cv2, "getWindowProperty", lambda *a: self.visible)
        monkeypatch.setattr(sinks.cv2, "destroyWindow", lambda *a: None)


@pytest.mark.parametrize("keys, visible, stops", [([-1, ord("q")], 1.0, [False, True]), ([-1, 27], 1.0, [False, True]),
                                                  ([-1, -1], 0.0, [True, True])])
def test_window_shows_annotated_frames_and_stops_on_q_esc_or_close(monkeypatch, keys, visible, stops) -> None:
    gui = _FakeGui(keys, visible)
    gui.install(monkeypatch)
    win = WindowSink("t")
    got = []
    for i in range(2):
        r = _result(i)
        r.status = ["FPS 30.0"]
        win.write(r)
        got.append(win.stop_requested)
    win.close()
    assert got == stops
    img = gui.shown[0]
    assert img.shape == (120, 160, 3)
    assert (img != blob_frame(0)).any(axis=2)[38:58, 6:26].any()  # the box was drawn
    assert (img[8:22, 8:60].min(axis=2) > 200).any() and (img[8:22, 8:60] < 10).any()  # status text on black


def test_grid_window_tiles_the_streams_and_redraws_once_per_batch(monkeypatch) -> None:
    from detnet_trt.apps.camera.sinks import GridWindowSink

    gui = _FakeGui([-1] * 10)
    gui.install(monkeypatch)
    win = GridWindowSink(["a", "b", "c"], "grid", tile=(90, 120), max_rate=5.0)
    assert (win.rows, win.cols) == (2, 2) and win.canvas.shape == (180, 240, 3)
    for k in range(3):  # one batch of three streams: one redraw
        r = _result(k)
        r.stream, r.stream_index = "abc"[k], k
        win.write(r)
    win.close()
    assert win.redraws == 1 and len(gui.shown) == 1
    canvas = win.canvas
    # streams 0, 1, 2 in tiles (0, 0), (0, 1), (1, 0); the fourth tile stays black
    for k, (y, x) in enumerate([(0, 0), (0, 120), (90, 0)]):
        assert (canvas[y : y + 90, x : x + 120] > 200).any(), k
    assert canvas[90:, 120:].max() == 0
    gui.keys = [ord("q")]
    win._t_shown = -1e9
    win.write(_result(0))
    assert win.stop_requested


def test_per_stream_sinks_get_only_their_stream_and_all_close(tmp_path) -> None:
    from detnet_trt.apps.camera.sinks import PerStreamSink, Sink

    class Count(Sink):
        def __init__(self, fail: bool = False) -> None:
            self.seen, self.closed, self.fail = [], False, fail

        def write(self, result) -> None:
            self.seen.append(result.index)

        def close(self) -> None:
            self.closed = True
            if self.fail:
                raise OSError("disk full")

    a, b = Count(fail=True), Count()
    sink = PerStreamSink([a, b])
    for k in range(5):
        r = _result(k)
        r.stream_index = k % 2
        sink.write(r)
    assert a.seen == [0, 2, 4] and b.seen == [1, 3]
    with pytest.raises(OSError, match="disk full"):
        sink.close()
    assert a.closed and b.closed  # the second one closed although the first failed
