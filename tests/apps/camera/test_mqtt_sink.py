"""The MQTT event sink against a real broker on loopback, started by these tests.

The broker is mosquitto when it is on PATH, else amqtt (a pure-Python MQTT 3.1.1 broker from the
``dev`` extra, so CI, which installs only from setup.py, always runs these tests). It is killed
and started again on the same port in the middle of a run: inference goes on, messages resume, and
what was not delivered is counted.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from camera_fakes import BlobBackend, FlakyOpener, write_video

from detnet_trt.apps.camera import CameraOptions, LiveSource, StopFlag, format_summary, run_camera, run_multi_camera
from detnet_trt.apps.camera.mqtt_sink import MqttOptions, MqttSink
from detnet_trt.apps.camera.tracking import TrackerConfig
from detnet_trt.cli import build_parser
from detnet_trt.cli.camera import camera_options
from detnet_trt.core.errors import InputError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Broker:
    """A real MQTT broker on 127.0.0.1:``port``: mosquitto if on PATH, else amqtt; ``start`` /
    ``kill`` (SIGKILL: the broker vanishes, as a crash or a pulled cable)."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None
        self.kind = "mosquitto" if shutil.which("mosquitto") else "amqtt"

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self.folder / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            return [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]
        conf = self.folder / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]

    def start(self) -> None:
        log = open(self.folder / f"{self.kind}.log", "ab")  # noqa: SIM115 - the broker's, closed with it
        self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait(lambda: _listening(self.port) or self.proc.poll() is not None, 30, f"{self.kind} to listen")
        assert self.proc.poll() is None, (self.folder / f"{self.kind}.log").read_text()[-2000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture()
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.kill()


class Subscriber:
    """A paho client on ``topic/#`` that collects the JSON messages (and resubscribes after a reconnect)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(f"{topic}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(20), "the test subscriber did not subscribe"

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def got(self) -> list[tuple[str, dict]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_one_message_per_frame_with_stream_and_track_ids(broker, tmp_path) -> None:
    sub = Subscriber(broker.port, "site")
    try:
        video = write_video(tmp_path / "in.mp4", 20)
        opts = CameraOptions(show=False, log_interval=None, track=TrackerConfig(),
                             mqtt=MqttOptions(port=broker.port, topic="site", qos=1))
        summary = run_camera(BlobBackend(), str(video), opts, handle_signals=False)
        _wait(lambda: len(sub.got()) >= 20, 10, "20 messages")
        got = sub.got()
    finally:
        sub.close()
    assert len(got) == 20
    assert {t for t, _ in got} == {"site/0"}
    frames = [m for _, m in got]
    assert [m["frame"] for m in frames] == list(range(20))
    assert all(m["stream"] == "0" and len(m["detections"]) == 1 for m in frames)
    # the blob jumps back to the left at frame 0 of each 30: within 20 frames one track, id 1
    assert {m["detections"][0]["track_id"] for m in frames} == {1}
    stats = summary["mqtt"]
    assert stats["messages"] == 20 and stats["delivered"] == 20 and stats["undelivered"] == 0
    assert stats["connects"] == 1 and stats["disconnects"] == 0
    assert stats["broker"] == f"127.0.0.1:{broker.port}"
    assert f"mqtt 127.0.0.1:{broker.port}: 20 messages, 20 delivered, 0 undelivered" in format_summary(summary)


def test_several_streams_one_topic_each(broker, tmp_path) -> None:
    sub = Subscriber(broker.port, "site")
    try:
        videos = [("door", str(write_video(tmp_path / "a.mp4", 6))), ("yard", str(write_video(tmp_path / "b.mp4", 9)))]
        opts = CameraOptions(show=False, log_interval=None, track=TrackerConfig(), mqtt=MqttOptions(port=broker.port, topic="site"))
        summary = run_multi_camera(BlobBackend(), videos, opts, handle_signals=False)
        _wait(lambda: len(sub.got()) >= 15, 10, "15 messages")
        got = sub.got()
    finally:
        sub.close()
    for name, n in (("door", 6), ("yard", 9)):
        mine = [m for t, m in got if t == f"site/{name}"]
        assert [m["frame"] for m in mine] == list(range(n)) and all(m["stream"] == name for m in mine)
        assert {m["detections"][0]["track_id"] for m in mine} == {1}  # ids per stream
    assert summary["mqtt"]["messages"] == summary["mqtt"]["delivered"] == 15


def test_track_events_start_and_end(broker, tmp_path) -> None:
    sub = Subscriber(broker.port, "ev")
    try:
        video = write_video(tmp_path / "in.mp4", 45)  # the blob wraps at frame 30: track 1 ends, 2 starts
        opts = CameraOptions(show=False, log_interval=None, track=TrackerConfig(buffer=5),
                             mqtt=MqttOptions(port=broker.port, topic="ev", per="track"))
        summary = run_camera(BlobBackend(), str(video), opts, handle_signals=False)
        _wait(lambda: len(sub.got()) >= 4, 10, "4 track events")
        time.sleep(0.3)
        events = [(m["event"], m["track_id"], m["frame"], m.get("reason")) for _, m in sub.got()]
    finally:
        sub.close()
    assert events[0] == ("start", 1, 0, None)
    assert ("start", 2, 31, None) in events  # the newcomer is confirmed on its second frame
    assert ("end", 1, 35, "lost") in events  # last seen at 29, ended when not seen for more than 5 frames
    assert events[-1] == ("end", 2, None, "stream ended")  # alive when the video ended
    assert len(events) == 4 and summary["mqtt"]["delivered"] == 4


def test_broker_killed_and_restarted_mid_run(broker, tmp_path) -> None:
    """A live camera at 200 FPS, a 10 ms backend: the broker dies after 20 messages and comes back
    1.5 s later on the same port. Frames are processed all along (JSON lines), the sink reconnects
    and delivers again, and the messages that could not be delivered are counted."""
    sub = Subscriber(broker.port, "cam")
    jsonl = tmp_path / "dets.jsonl"
    src = LiveSource(FlakyOpener([None]), "fake", reconnect=True)
    flag = StopFlag()
    result: dict = {}
    opts = CameraOptions(show=False, jsonl=jsonl, log_interval=None,
                         mqtt=MqttOptions(port=broker.port, topic="cam", qos=1, queue=5, min_delay=0.2, max_delay=0.5))

    def lines() -> int:
        return len(jsonl.read_text().splitlines()) if jsonl.exists() else 0

    run = threading.Thread(target=lambda: result.update(
        run_camera(BlobBackend(latency=0.01), src, opts, handle_signals=False, stop=flag)))
    try:
        run.start()
        _wait(lambda: len(sub.got()) >= 20, 30, "20 messages before the broker dies")
        broker.kill()
        at_kill = lines()
        time.sleep(1.5)
        during = lines() - at_kill
        sub.messages.clear()
        before_restart = lines()
        broker.start()
        sub.subscribed.clear()
        _wait(sub.subscribed.is_set, 20, "the subscriber back")
        _wait(lambda: any(m["frame"] >= before_restart for _, m in sub.got()), 20, "new frames after the restart")
        after = sub.got()
    finally:
        flag.set("test")
        run.join(timeout=30)
        src.close()
        sub.close()
    assert not run.is_alive() and result, "the run did not finish"
    assert during >= 20, f"inference stalled while the broker was away ({during} frames in 1.5 s)"
    # frames processed after the restart arrive (with, first, the QoS 1 ones in flight at the kill, sent again)
    assert max(m["frame"] for _, m in after) >= before_restart
    stats = result["mqtt"]
    assert stats["messages"] == result["frames"] == lines()  # one message per processed frame
    assert stats["disconnects"] >= 1 and stats["connects"] >= 2
    assert stats["dropped"] >= during - 5 - 100  # the queue held 5; paho holds at most 100 in flight
    assert stats["undelivered"] >= 1
    assert stats["delivered"] + stats["undelivered"] == stats["messages"]


def test_publishing_never_blocks_the_loop(monkeypatch, tmp_path) -> None:
    """A client whose publish() hangs (a stuck network) holds the loop back not at all: every frame
    is processed, what could not go out is counted."""
    release = threading.Event()
    calls = []

    def stuck_publish(self, topic, payload=None, qos=0, retain=False, properties=None):
        calls.append(topic)
        release.wait(30)
        raise OSError("stuck network (test)")

    monkeypatch.setattr(mqtt.Client, "publish", stuck_publish)
    broker = Broker(tmp_path)
    broker.start()
    try:
        video = write_video(tmp_path / "in.mp4", 40)
        opts = CameraOptions(show=False, log_interval=None,
                             mqtt=MqttOptions(port=broker.port, queue=10, flush_timeout=0.2))
        t0 = time.monotonic()
        done = threading.Event()
        out: dict = {}

        def go() -> None:
            out.update(run_camera(BlobBackend(), str(video), opts, handle_signals=False))
            done.set()

        threading.Thread(target=go, daemon=True).start()
        _wait(lambda: calls, 20, "the first publish")
        # the run's frames do not wait for the stuck publish (released only after the loop ended)
        _wait(lambda: done.is_set() or out, 60, "the run to end")
    finally:
        release.set()
        broker.kill()
    assert out["frames"] == 40 and time.monotonic() - t0 < 60
    st = out["mqtt"]
    assert st["messages"] == 40 and st["delivered"] == 0 and st["undelivered"] == 40
    assert st["dropped"] >= 40 - 10 - 1


def test_no_broker_at_all_counts_everything_undelivered(tmp_path) -> None:
    video = write_video(tmp_path / "in.mp4", 10)
    opts = CameraOptions(show=False, log_interval=None, mqtt=MqttOptions(port=_free_port(), flush_timeout=0.1))
    s = run_camera(BlobBackend(), str(video), opts, handle_signals=False)
    assert s["frames"] == 10
    assert s["mqtt"]["messages"] == 10 and s["mqtt"]["delivered"] == 0 and s["mqtt"]["undelivered"] == 10
    assert s["mqtt"]["connects"] == 0


@pytest.mark.parametrize("address, host, port", [
    ("", "127.0.0.1", 1883), (":1884", "127.0.0.1", 1884), ("broker.lan", "broker.lan", 1883),
    ("10.0.0.5:8883", "10.0.0.5", 8883), ("[::1]:1885", "::1", 1885), ("[::1]", "::1", 1883),
])
def test_mqtt_address_parsing(address: str, host: str, port: int) -> None:
    o = MqttOptions.from_address(address)
    assert (o.host, o.port) == (host, port)


@pytest.mark.parametrize("address", ["host:", "host:0", "host:70000", "a:b:c", "host:x", "bad host"])
def test_bad_mqtt_addresses_are_one_clear_error(address: str) -> None:
    with pytest.raises(InputError, match="--mqtt"):
        MqttOptions.from_address(address)


@pytest.mark.parametrize("kw, match", [({"topic": "a/+/b"}, "mqtt-topic"), ({"topic": ""}, "mqtt-topic"),
                                       ({"per": "x"}, "mqtt-per"), ({"qos": 2}, "mqtt-qos"),
                                       ({"queue": 0}, "mqtt-queue")])
def test_mqtt_options_are_checked(kw: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        MqttOptions(**kw)


def test_topics_are_per_stream_and_safe() -> None:
    o = MqttOptions(topic="site1/cams/")
    assert o.topic_of("door") == "site1/cams/door"
    assert o.topic_of("a/b#c+") == "site1/cams/a_b_c_"


def test_cli_mqtt_flags() -> None:
    p = build_parser()
    base = ["camera", "--model", "m.onnx", "--source", "0"]
    assert camera_options(p.parse_args(base)).mqtt is None  # no network unless asked
    o = camera_options(p.parse_args([*base, "--mqtt"])).mqtt
    assert o is not None and (o.host, o.port, o.topic, o.per, o.qos) == ("127.0.0.1", 1883, "detnet-trt", "frame", 1)
    o = camera_options(p.parse_args([*base, "--mqtt", "10.1.2.3:1999", "--mqtt-topic", "x/y", "--mqtt-qos", "0",
                                     "--mqtt-queue", "50", "--track", "--mqtt-per", "track"])).mqtt
    assert o is not None and (o.host, o.port, o.topic, o.qos, o.queue, o.per) == ("10.1.2.3", 1999, "x/y", 0, 50, "track")
    with pytest.raises(InputError, match="need --track"):
        camera_options(p.parse_args([*base, "--mqtt", "--mqtt-per", "track"]))


def test_the_sink_alone_reconnects_and_counts(broker) -> None:
    """MqttSink by itself: delivered while up; while down, queued up to ``queue`` then dropped."""
    from camera_fakes import blob_frame

    from detnet_trt.apps.camera.sinks import FrameResult
    from detnet_trt.apps.camera.sources import Frame
    from detnet_trt.runtime.postprocess import Detections

    sink = MqttSink(MqttOptions(port=broker.port, queue=3, min_delay=0.2, max_delay=0.5, flush_timeout=5))

    def put(i: int) -> None:
        sink.write(FrameResult(i, Frame(blob_frame(i), i, time.perf_counter(), time.time()), Detections.empty()))

    try:
        _wait(lambda: sink.counters()["connects"] == 1, 10, "the connection")
        for i in range(5):
            put(i)
            _wait(lambda i=i: sink.counters()["delivered"] == i + 1, 10, f"message {i} delivered")
        broker.kill()
        _wait(lambda: sink.counters()["disconnects"] == 1, 10, "the disconnect")
        for i in range(5, 15):
            put(i)  # returns at once: 3 are kept, 7 dropped
        assert sink.counters()["dropped"] == 7
        broker.start()
        _wait(lambda: sink.counters()["delivered"] == 8, 20, "the 3 kept delivered after the reconnect")
    finally:
        sink.close()
    c = sink.counters()
    assert (c["messages"], c["delivered"], c["dropped"], c["undelivered"], c["connects"]) == (15, 8, 7, 7, 2)


def test_missing_paho_is_one_clear_error_before_the_model_loads(monkeypatch, tmp_path) -> None:
    from detnet_trt.core.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # import paho.mqtt.client now fails
    loaded = []

    class Watch(BlobBackend):
        def _open(self) -> None:
            loaded.append(True)

    with pytest.raises(MissingDependencyError, match=r"detnet-trt\[mqtt\]"):
        run_camera(Watch(), str(write_video(tmp_path / "in.mp4", 3)), CameraOptions(show=False, mqtt=MqttOptions()),
                   handle_signals=False)
    assert loaded == []
