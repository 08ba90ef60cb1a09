"""Several sources in one run: video files and fake cameras batched into one backend call, one
camera failing mid-run, every processed frame in every sink of its stream, per-stream stats."""

from __future__ import annotations

import json
import re
import time

import cv2
import pytest
from camera_fakes import BlobBackend, FlakyOpener, blob_x, write_video

from detnet_trt.apps.camera import (
    CameraOptions,
    LiveSource,
    StopFlag,
    format_summary,
    open_source,
    read_sources_file,
    run_multi_camera,
    run_multi_loop,
    stream_specs,
)
from detnet_trt.core.errors import InputError, OutputExistsError
from detnet_trt.runtime.detector import Detector

YS = (8, 40, 72)  # the blob's height in each test video: tells the streams apart


def _frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _videos(tmp_path, lengths) -> list[str]:
    return [str(write_video(tmp_path / f"cam{k}.mp4", n, y=YS[k % 3])) for k, n in enumerate(lengths)]


def _check_own_detection(rec: dict, y: int) -> None:
    (det,) = rec["detections"]
    x1, y1, x2, _ = det["box"]
    assert abs(x1 - blob_x(rec["source_frame"])) <= 3 and abs(y1 - y) <= 3 and abs(x2 - x1 - 16) <= 3


@pytest.mark.parametrize("overlap", [True, False])
def test_video_files_every_frame_of_every_stream_reaches_its_sinks_in_order(tmp_path, overlap: bool) -> None:
    lengths = (12, 7, 18)
    videos = _videos(tmp_path, lengths)
    out, rec, stats = tmp_path / "o.jsonl", tmp_path / "rec.mp4", tmp_path / "s.json"
    backend = BlobBackend(latency=0.002)
    s = run_multi_camera(backend, videos, CameraOptions(show=False, jsonl=out, record=rec, stats_json=stats,
                                                         overlap=overlap, log_interval=None), handle_signals=False)
    recs = _records(out)
    assert s["frames"] == len(recs) == sum(lengths) and s["stop_reason"] == "end of streams"
    for k, (name, n) in enumerate(zip(("cam0", "cam1", "cam2"), lengths)):
        mine = [r for r in recs if r["stream"] == name]
        # every frame of the file, in order, each with the detection of its own frame and video
        assert [r["frame"] for r in mine] == list(range(n)) and [r["source_frame"] for r in mine] == list(range(n))
        for r in mine:
            _check_own_detection(r, YS[k])
        assert _frames(tmp_path / f"rec.{name}.mp4") == n  # one recording per stream, every frame
        st = s["streams"][k]
        assert (st["stream"], st["frames"], st["frames_read"], st["dropped"]) == (name, n, n, 0)
        assert st["latency"]["count"] == n and st["latency"]["p99_ms"] >= st["latency"]["p50_ms"] > 0
    # one backend call per batch; batches of 3 while all three files run, then 2, then 1
    assert s["batch_sizes"] == {"1": 6, "2": 5, "3": 7} and s["backend_calls"] == s["batches"] == 18
    assert backend.batch_sizes[-18:] == [3] * 7 + [2] * 5 + [1] * 6  # after the warm-up call
    saved = json.loads(stats.read_text())
    assert saved["frames"] == sum(lengths) and len(saved["streams"]) == 3 and saved["outputs"]["record"][0].endswith("rec.cam0.mp4")
    assert "3 streams: 37 frames" in format_summary(saved) and "cam2" in format_summary(saved)


def test_a_batch_above_the_backend_maximum_is_split(tmp_path) -> None:
    videos = _videos(tmp_path, (5, 5, 5))
    backend = BlobBackend(max_batch=2)
    out = tmp_path / "o.jsonl"
    s = run_multi_camera(backend, videos, CameraOptions(show=False, jsonl=out, log_interval=None), handle_signals=False, warmup=0)
    assert s["batches"] == 5 and s["batch_sizes"] == {"3": 5} and s["backend_calls"] == 10 and s["max_batch"] == 2
    assert backend.batch_sizes == [2, 1] * 5
    for k, name in enumerate(("cam0", "cam1", "cam2")):  # results of the second call go to the third stream
        for r in (r for r in _records(out) if r["stream"] == name):
            _check_own_detection(r, YS[k])


def test_a_camera_failing_mid_run_never_stops_the_others(tmp_path, caplog) -> None:
    """Two fake cameras (one dies after 8 frames, no reconnect) and a video file: the file is read
    to its end, the good camera runs until --max-frames, the dead one ended with its 8 frames."""
    video = _videos(tmp_path, (25,))[0]
    good = LiveSource(FlakyOpener([None], fps=100, y=40), "good")
    dies = LiveSource(FlakyOpener([8], fps=100, y=72), "dies", reconnect=False)
    file_src = open_source(video, threaded=True)
    out = tmp_path / "o.jsonl"
    from detnet_trt.apps.camera import JsonLinesSink

    sink = JsonLinesSink(out)
    caplog.set_level("INFO", logger="detnet_trt.camera")
    try:
        s = run_multi_loop(Detector(BlobBackend(latency=0.003)), [file_src, good, dies], ["file", "good", "dies"], [sink],
                           CameraOptions(max_frames=25, log_interval=0.05))
    finally:
        sink.close()
        for src in (file_src, good, dies):
            src.close()
    by = {st["stream"]: st for st in s["streams"]}
    assert by["file"]["frames"] == 25 and by["good"]["frames"] == 25 and s["stop_reason"] == "max-frames"
    assert 1 <= by["dies"]["frames"] <= 8 and by["dies"]["ended"] and by["dies"]["frames_read"] == 8
    recs = _records(out)
    for name, y in (("file", 8), ("good", 40), ("dies", 72)):  # every processed frame in the JSON lines, its own
        mine = [r for r in recs if r["stream"] == name]
        assert len(mine) == by[name]["frames"] and [r["frame"] for r in mine] == list(range(len(mine)))
        for r in mine:
            _check_own_detection(r, y)
    # the periodic log: the overall line with the batch sizes, then one line per stream
    assert re.search(r"\d+ frames, [\d.]+ FPS, \d+ batches \{", caplog.text)
    for name in ("file", "good", "dies"):
        assert re.search(rf"  {name}: \d+ frames, [\d.]+ FPS, dropped \d+, reconnects 0, latency p50 \d+ / p99 \d+ ms",
                         caplog.text)
    # a live stream's gaps in source_frame are its counted drops
    good_idx = [r["source_frame"] for r in recs if r["stream"] == "good"]
    assert by["good"]["dropped"] >= good_idx[-1] + 1 - len(good_idx)


def test_reconnects_and_a_camera_down_at_start_are_per_stream(tmp_path) -> None:
    flaky = LiveSource(FlakyOpener([6, "fail", None], fps=150), "flaky", backoff=0.01, max_backoff=0.02)
    late = LiveSource(FlakyOpener(["fail", "fail", None], fps=150, y=72), "late", backoff=0.01, max_backoff=0.02,
                      wait_for_open=True)
    steady = LiveSource(FlakyOpener([None], fps=150, y=8), "steady")
    try:
        s = run_multi_loop(Detector(BlobBackend(latency=0.002)), [flaky, late, steady], ["flaky", "late", "steady"],
                           options=CameraOptions(max_frames=20, duration=10.0, log_interval=None))
    finally:
        for src in (flaky, late, steady):
            src.close()
    by = {st["stream"]: st for st in s["streams"]}
    assert all(st["frames"] == 20 for st in by.values()) and s["stop_reason"] == "max-frames"
    assert (by["flaky"]["reconnects"], by["flaky"]["reconnect_attempts"]) == (1, 2)
    assert (by["late"]["reconnects"], by["late"]["reconnect_attempts"]) == (1, 2)
    assert by["steady"]["reconnects"] == 0 and s["reconnects"] == 2


def test_slow_stream_is_not_starved_by_a_fast_one() -> None:
    """A 400 FPS camera and a 25 FPS camera, batches taken as soon as a frame is there
    (timeout 0): the slow camera's frames are nearly all processed, none waits behind the fast
    one's, and the fast one gets a frame into (nearly) every batch."""
    fast = LiveSource(FlakyOpener([None], fps=400), "fast")
    slow = LiveSource(FlakyOpener([None], fps=25, y=72), "slow")
    try:
        s = run_multi_loop(Detector(BlobBackend(latency=0.004)), [fast, slow], ["fast", "slow"],
                           options=CameraOptions(duration=1.2, batch_timeout_ms=0, log_interval=None))
    finally:
        fast.close()
        slow.close()
    f, sl = s["streams"]
    assert sl["frames"] >= 20 and sl["frames"] >= sl["frames_read"] - 2 and sl["dropped"] <= 1
    assert f["frames"] >= 0.9 * s["batches"] and f["dropped"] > 0  # the fast one drops, it is not queued
    assert sl["latency"]["p99_ms"] < 200  # a slow frame waits about one batch (4 ms), not behind the fast stream
    assert s["batch_sizes"].get("2", 0) >= 0.5 * sl["frames"]  # mostly batched with a fast frame


def test_duration_stops_a_run_whose_streams_never_end() -> None:
    a, b = (LiveSource(FlakyOpener([None], fps=60), n) for n in ("a", "b"))
    try:
        t0 = time.perf_counter()
        s = run_multi_loop(Detector(BlobBackend()), [a, b], ["a", "b"], options=CameraOptions(duration=0.4, log_interval=None))
        took = time.perf_counter() - t0
    finally:
        a.close()
        b.close()
    assert s["stop_reason"] == "duration" and 0.3 < took < 2.5 and s["wall_s"] >= 0.35
    assert all(st["frames"] > 5 for st in s["streams"])


def test_stop_flag_ends_a_run_waiting_for_frames() -> None:
    dead = LiveSource(FlakyOpener([1, "fail"]), "dead", backoff=5.0)
    flag = StopFlag()
    import threading

    threading.Timer(0.3, flag.set, args=("SIGTERM",)).start()
    try:
        t0 = time.perf_counter()
        s = run_multi_loop(Detector(BlobBackend()), [dead], ["dead"], options=CameraOptions(log_interval=None), stop=flag)
    finally:
        dead.close()
    assert s["stop_reason"] == "SIGTERM" and time.perf_counter() - t0 < 2.0


# --- naming and the --sources file ----------------------------------------------------------
def test_sources_file_names_comments_and_default_names(tmp_path) -> None:
    videos = _videos(tmp_path, (3, 3))
    f = tmp_path / "streams.txt"
    f.write_text(f"# shop\n\n{videos[0]}\ndoor = {videos[1]}\n  {videos[0]}  \n")
    pairs = read_sources_file(f)
    assert pairs == [(None, videos[0]), ("door", videos[1]), (None, videos[0])]
    specs = stream_specs([videos[1], *pairs, "csi://0", "rtsp://u:pw@10.0.0.7/s"])
    assert [s.name for s in specs] == ["cam1", "cam0", "door", "cam0-2", "csi0", "10.0.0.7"]
    assert "pw" not in specs[-1].source.label


@pytest.mark.parametrize("text, match", [("", "lists no source"), ("# only a comment\n", "lists no source"),
                                         ("door=\n", r"streams.txt:1: no source after door="),
                                         ("x\n", "streams.txt:1: source 'x' is not a camera index"),
                                         ("a={v}\na={v}\n", "more than once")])
def test_bad_sources_files_are_one_clear_error(tmp_path, text, match) -> None:
    video = _videos(tmp_path, (2,))[0]
    f = tmp_path / "streams.txt"
    f.write_text(text.format(v=video))
    with pytest.raises(InputError, match=match):
        stream_specs(read_sources_file(f))


def test_missing_sources_file(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_sources_file(tmp_path / "nope.txt")


def test_outputs_of_every_stream_are_checked_before_the_model_loads(tmp_path) -> None:
    videos = _videos(tmp_path, (3, 3))
    (tmp_path / "rec.cam1.mp4").write_bytes(b"mine")
    loaded = []

    class Counting(BlobBackend):
        def _open(self) -> None:
            loaded.append(1)

    with pytest.raises(OutputExistsError, match="rec.cam1.mp4"):
        run_multi_camera(Counting(), videos, CameraOptions(show=False, jsonl=tmp_path / "o.jsonl", record=tmp_path / "rec.mp4"),
                         handle_signals=False)
    assert not loaded and not (tmp_path / "o.jsonl").exists() and (tmp_path / "rec.cam1.mp4").read_bytes() == b"mine"
    (tmp_path / "rec.cam1.mp4").unlink()
    with pytest.raises(InputError, match="different files"):  # a recording name equal to the JSON lines
        run_multi_camera(Counting(), videos, CameraOptions(show=False, jsonl=tmp_path / "rec.cam0.mp4", record=tmp_path / "rec.mp4"),
                         handle_signals=False)
    with pytest.raises(InputError, match="batch-timeout-ms"):
        CameraOptions(batch_timeout_ms=-1)


def test_real_tiny_model_batched_over_streams(request, tmp_path) -> None:
    tiny_onnx = request.getfixturevalue("tiny_onnx")
    videos = _videos(tmp_path, (4, 3))
    out = tmp_path / "o.jsonl"
    from detnet_trt.core.config import PostprocessConfig

    s = run_multi_camera(tiny_onnx, videos, CameraOptions(show=False, jsonl=out, log_interval=None), PostprocessConfig(conf=0.0),
                         handle_signals=False)
    recs = _records(out)
    assert s["frames"] == len(recs) == 7 and s["batch_sizes"] == {"1": 1, "2": 3} and s["backend"]["backend"] != "blob"
    assert all(r["detections"] for r in recs)
