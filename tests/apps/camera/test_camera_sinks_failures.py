"""A recording that fails (full disk, writer gone, unplayable file) is an error, never "recorded":
the partial file is removed, the camera command exits non-zero (issue 16)."""

from __future__ import annotations

import errno
import time
from collections import namedtuple

import cv2
import numpy as np
import pytest
from camera_fakes import CLASSES, BlobBackend, blob_frame, write_video

import detnet_trt.apps.camera.sinks as sinks
import detnet_trt.runtime.backends as backends
from detnet_trt.apps.camera.sinks import FrameResult, JsonLinesSink, VideoRecorder
from detnet_trt.apps.camera.sources import Frame
from detnet_trt.core.fileio import OutputError
from detnet_trt.runtime.postprocess import Detections

RealWriter = cv2.VideoWriter


def _result(i: int) -> FrameResult:
    dets = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    return FrameResult(i, Frame(blob_frame(i), i, time.perf_counter(), 1700000000.0 + i, i / 30), dets, CLASSES)


class _TruncatingWriter:
    """A real writer whose file is cut short at release (what a full disk leaves)."""

    fourcc = staticmethod(RealWriter.fourcc)

    def __init__(self, path, *a):
        self.path, self.w = path, RealWriter(path, *a)

    def isOpened(self):
        return self.w.isOpened()

    def write(self, img):
        self.w.write(img)

    def release(self):
        self.w.release()
        with open(self.path, "r+b") as f:
            f.truncate(100)


class _StoppingWriter(_TruncatingWriter):
    """A writer that closes itself after two frames (cv2 says nothing on write)."""

    n = 0

    def isOpened(self):
        return self.n < 2

    def write(self, img):
        self.n += 1
        self.w.write(img)


def _no_leftovers(folder) -> bool:
    return list(folder.iterdir()) == []


def test_truncated_video_is_an_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sinks.cv2, "VideoWriter", _TruncatingWriter)
    rec = VideoRecorder(tmp_path / "rec.mp4", fps=15)
    for i in range(5):
        rec.write(_result(i))
    with pytest.raises(OutputError, match=r"recording .*rec.mp4 failed after 5 frames.*nothing was written"):
        rec.close()
    assert _no_leftovers(tmp_path)
    rec.close()  # closed: nothing more to do


def test_writer_that_stops_is_found_while_recording(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sinks.cv2, "VideoWriter", _StoppingWriter)
    monkeypatch.setattr(VideoRecorder, "CHECK_EVERY", 1)
    rec = VideoRecorder(tmp_path / "rec.mp4")
    rec.write(_result(0))
    with pytest.raises(OutputError, match="writer stopped"):
        for i in range(1, 5):
            rec.write(_result(i))
    assert _no_leftovers(tmp_path)


def test_full_disk_is_found_while_recording(tmp_path, monkeypatch) -> None:
    rec = VideoRecorder(tmp_path / "rec.mp4")
    rec.write(_result(0))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sinks.shutil, "disk_usage", lambda p: usage(100, 100, 0))
    with pytest.raises(OutputError, match="no space left"):
        for i in range(1, VideoRecorder.CHECK_EVERY + 2):
            rec.write(_result(i))
    assert _no_leftovers(tmp_path)


def test_jsonl_full_disk_names_the_file(tmp_path, monkeypatch) -> None:
    sink = JsonLinesSink(tmp_path / "o.jsonl")
    sink.write(_result(0))

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink._f, "flush", full)
    with pytest.raises(OutputError, match=r"o\.jsonl: no space left"):
        sink.write(_result(1))
    sink.close()


def test_camera_record_that_fails_exits_non_zero(tmp_path, monkeypatch, capsys) -> None:
    from detnet_trt.cli import main

    monkeypatch.setattr(backends, "load_backend", lambda path, **kw: BlobBackend(latency=0.001))
    video = write_video(tmp_path / "in.mp4", 6)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(sinks.cv2, "VideoWriter", _TruncatingWriter)
    rc = main(["camera", "--model", "m.onnx", "--source", str(video), "--headless", "--record", str(out / "r.mp4")])
    cap = capsys.readouterr()
    assert rc == 2
    assert "frames" not in cap.out  # no summary of a run whose output is lost
    assert "detnet-trt camera: error: recording" in cap.err and "recorded" not in cap.err
    assert _no_leftovers(out)
