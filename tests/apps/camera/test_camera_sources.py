"""Source parsing, GStreamer detection, file/folder sources and the live capture thread."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest
from camera_fakes import FakeCamera, FlakyOpener, blob_frame, blob_x, write_video

from detnet_trt.apps.camera import sources
from detnet_trt.apps.camera.sources import (
    ImageFolderSource,
    LiveSource,
    SourceError,
    csi_pipeline,
    open_capture,
    open_source,
    parse_source,
    rtsp_pipeline,
)


@pytest.mark.parametrize(
    "text, kind, target",
    [
        ("0", "usb", "0"),
        ("2", "usb", "2"),
        ("/dev/video1", "v4l2", "/dev/video1"),
        ("csi://0", "csi", "0"),
        ("csi://1?width=1920&height=1080&fps=30", "csi", "1"),
        ("rtsp://user:pw@10.0.0.2:554/stream1", "rtsp", "rtsp://user:pw@10.0.0.2:554/stream1"),
        ("http://cam.local/mjpg", "http", "http://cam.local/mjpg"),
        ("gst:videotestsrc ! appsink", "gstreamer", "videotestsrc ! appsink"),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink"),
    ],
)
def test_parse_source_kinds(text: str, kind: str, target: str) -> None:
    spec = parse_source(text)
    assert (spec.kind, spec.target) == (kind, target)
    assert spec.live


def test_parse_source_files_and_folders(tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    image = tmp_path / "one.jpg"
    image.write_bytes(b"x")
    assert parse_source(str(tmp_path)).kind == "folder"
    assert parse_source(str(video)).kind == "file"
    assert parse_source(str(image)).kind == "folder"  # a single image: a one-image folder
    assert not parse_source(str(video)).live


def test_parse_source_csi_options() -> None:
    spec = parse_source("csi://1?width=1920&height=1080&fps=60&flip=2")
    assert spec.options == {"width": "1920", "height": "1080", "fps": "60", "flip": "2"}


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty --source"),
        ("csi://cam", "bad CSI source"),
        ("csi://0?zoom=2", "unknown CSI options"),
        ("csi://0?width=big", "not a whole number"),
        ("ftp://host/x", "unsupported source scheme"),
        ("/no/such/video.mp4", "no such file or folder"),
    ],
)
def test_parse_source_errors(text: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        parse_source(text)


def test_rtsp_password_is_redacted_in_names() -> None:
    assert "pw" not in parse_source("rtsp://user:pw@host/s").describe()


def test_gstreamer_detection_matches_build_information() -> None:
    info = cv2.getBuildInformation()
    line = next(ln for ln in info.splitlines() if ln.strip().startswith("GStreamer:"))
    assert sources.has_gstreamer() == ("YES" in line.split(":", 1)[1].upper())


def test_csi_without_gstreamer_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(sources, "has_gstreamer", lambda: False)
    with pytest.raises(SourceError, match="needs an OpenCV built with GStreamer.*JetPack"):
        open_capture(parse_source("csi://0"))


def test_csi_pipeline_uses_options(monkeypatch) -> None:
    seen = {}

    class Cap:
        def __init__(self, pipe, api):
            seen["pipe"], seen["api"] = pipe, api

        def isOpened(self):
            return True

    monkeypatch.setattr(sources, "has_gstreamer", lambda: True)
    monkeypatch.setattr(sources.cv2, "VideoCapture", Cap)
    open_capture(parse_source("csi://1?width=1920&height=1080&fps=60&flip=2"))
    assert seen["api"] == cv2.CAP_GSTREAMER
    assert seen["pipe"] == csi_pipeline(1, 1920, 1080, 60, 2)
    assert "nvarguscamerasrc sensor-id=1" in seen["pipe"] and "framerate=60/1" in seen["pipe"]
    assert seen["pipe"].endswith("appsink drop=true max-buffers=1 sync=false")


def test_rtsp_uses_gstreamer_pipeline_when_available(monkeypatch) -> None:
    seen = {}

    class Cap:
        def __init__(self, pipe, api, *params):
            seen["pipe"], seen["api"] = pipe, api

        def isOpened(self):
            return True

    monkeypatch.setattr(sources, "has_gstreamer", lambda: True)
    monkeypatch.setattr(sources.cv2, "VideoCapture", Cap)
    open_capture(parse_source("rtsp://h/s"))
    assert seen == {"pipe": rtsp_pipeline("rtsp://h/s"), "api": cv2.CAP_GSTREAMER}
    assert "latency=0" in seen["pipe"]


@pytest.mark.parametrize("user_value", [None, "rtsp_transport;udp"])
def test_rtsp_ffmpeg_options_set_only_while_opening(monkeypatch, user_value) -> None:
    seen = {}

    class Cap:
        def __init__(self, url, api, params):
            seen["env"] = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            seen["api"], seen["params"] = api, params

        def isOpened(self):
            return True

    if user_value is None:
        monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    else:
        monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", user_value)
    monkeypatch.setattr(sources, "has_gstreamer", lambda: False)
    monkeypatch.setattr(sources.cv2, "VideoCapture", Cap)
    open_capture(parse_source("rtsp://h/s"))
    assert seen["api"] == cv2.CAP_FFMPEG
    assert cv2.CAP_PROP_OPEN_TIMEOUT_MSEC in seen["params"]
    if user_value is None:
        assert "rtsp_transport;tcp" in seen["env"] and "nobuffer" in seen["env"]
    else:
        assert seen["env"] == user_value  # the user's own options win
    assert os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS") == user_value  # restored


def test_missing_camera_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open"):
        open_source("/dev/video97")


def test_video_file_every_frame_in_order(tmp_path) -> None:
    path = write_video(tmp_path / "v.mp4", 12, fps=25)
    src = open_source(str(path))
    assert not src.live and src.fps == pytest.approx(25)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert [f.index for f in frames] == list(range(12))
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[1] == pytest.approx(1 / 25, abs=1e-3)
    # content is frame i: the square sits at blob_x(i)
    cols = [int(np.nonzero(f.image[48, :, 0] > 200)[0].min()) for f in frames]
    assert all(abs(c - blob_x(i)) <= 1 for i, c in enumerate(cols))
    assert src.read() is None and src.dropped == 0


def test_image_folder_sorted_and_skips_unreadable(tmp_path) -> None:
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), blob_frame(i))
    (tmp_path / "img_1b.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImageFolderSource(tmp_path)
    got = []
    while (f := src.read()) is not None:
        got.append(int(np.nonzero(f.image[48, :, 0] > 200)[0].min()))
    assert got == [blob_x(0), blob_x(1), blob_x(2)]
    assert src.skipped == 1 and src.frames_read == 3


def test_empty_folder_is_an_error(tmp_path) -> None:
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))


def test_live_source_keeps_only_newest_and_counts_drops() -> None:
    src = LiveSource(lambda: FakeCamera(fps=500), "fake")
    try:
        first = src.read()
        time.sleep(0.1)  # a slow consumer: ~50 frames arrive meanwhile
        second = src.read()
        assert first is not None and second is not None
        assert second.index - first.index >= 10
        assert src.dropped >= second.index - first.index - 2
        assert time.perf_counter() - second.t_capture < 0.05  # newest, not queued
    finally:
        src.close()


def test_live_source_reconnects_after_failure() -> None:
    # camera fails after 5 frames; reopening fails once, then works
    opener = FlakyOpener([5, "fail", None])
    src = LiveSource(opener, "flaky", backoff=0.01, max_backoff=0.02)
    try:
        frames = [src.read() for _ in range(12)]
    finally:
        src.close()
    assert all(f is not None for f in frames)
    assert src.reconnects == 1 and src.reconnect_attempts == 2 and opener.calls == 3
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx))  # strictly increasing across the reconnect


def test_live_source_without_reconnect_ends() -> None:
    src = LiveSource(FlakyOpener([3, None]), "flaky", reconnect=False)
    got = 0
    while src.read() is not None:
        got += 1
    src.close()
    assert 1 <= got <= 3 and src.reconnects == 0 and src.reconnect_attempts == 0


def test_live_source_read_returns_on_stop() -> None:
    import threading

    stop = threading.Event()
    src = LiveSource(FlakyOpener([1, "fail"]), "dead", backoff=10.0)
    try:
        assert src.read() is not None
        stop.set()
        t0 = time.perf_counter()
        assert src.read(stop) is None
        assert time.perf_counter() - t0 < 1.0
    finally:
        t0 = time.perf_counter()
        src.close()
        assert time.perf_counter() - t0 < 1.0  # close interrupts the backoff wait
