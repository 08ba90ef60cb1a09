"""The MQTT event sink (``--mqtt``): detections published to a broker, one topic per stream.

Messages are JSON on ``<topic>/<stream>``: one per frame (``per="frame"``: the frame's JSON lines
record, with ``stream`` and each detection's ``track_id`` under ``--track``) or one per track event
(``per="track"``, needs ``--track``: ``{"event": "start" | "end", "track_id", ...}`` when a track is
confirmed or ends).

Publishing never blocks the loop: :meth:`MqttSink.write` encodes the message and appends it to a
bounded queue (``queue`` messages; when it is full the oldest is dropped and counted); a publisher
thread hands queued messages to paho-mqtt's background network thread while the broker is
connected, at most ``inflight`` unacknowledged at a time. A broker that goes away is reconnected
by paho with backoff (``min_delay`` doubling to ``max_delay`` seconds) while inference goes on;
QoS 1 messages in flight are sent again after the reconnect, messages queued meanwhile follow.
What was not delivered (PUBACK for QoS 1, written to the socket for QoS 0) is counted:
:meth:`MqttSink.stats` (the run summary's ``mqtt``) and the log line at :meth:`close`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...core.errors import InputError, MissingDependencyError
from ...core.limits import MESSAGES, PORT
from .sinks import FrameResult, Sink

log = logging.getLogger("detnet_trt.camera")

PERS = ("frame", "track")
_TOPIC_BAD = re.compile(r"[+#\x00]")
_STREAM_BAD = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class MqttOptions:
    """Where and how ``--mqtt`` publishes.

    ``host`` / ``port``: the broker (default loopback, 1883). ``topic``: the topic prefix (messages
    go to ``<topic>/<stream>``). ``per``: ``"frame"`` (one message per processed frame) or
    ``"track"`` (one per track start / end; needs ``--track``). ``qos``: 0 (at most once) or 1 (at
    least once, acknowledged). ``queue``: messages waiting for the broker at most (the oldest are
    dropped beyond). ``client_id``: ``""`` for ``detnet-trt-<pid>``. ``flush_timeout``: seconds
    :meth:`MqttSink.close` waits for queued messages to be delivered.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "detnet-trt"
    per: str = "frame"
    qos: int = 1
    queue: int = 1000
    inflight: int = 100
    keepalive: int = 30
    client_id: str = ""
    flush_timeout: float = 2.0
    min_delay: float = 0.5
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise InputError(f"--mqtt host {self.host!r} is not a host name or address", "give --mqtt HOST[:PORT]")
        PORT.check("--mqtt port", self.port)
        if not self.topic or _TOPIC_BAD.search(self.topic) or len(self.topic.encode()) > 1024:
            raise InputError(f"--mqtt-topic {self.topic!r} is not a topic prefix",
                             "use 1-1024 bytes without '+', '#' (wildcards), e.g. detnet-trt/site1")
        if self.per not in PERS:
            raise InputError(f"--mqtt-per must be one of {', '.join(PERS)}, got {self.per!r}")
        if self.qos not in (0, 1):
            raise InputError(f"--mqtt-qos must be 0 or 1, got {self.qos}")
        MESSAGES.check("--mqtt-queue", self.queue)
        if not 1 <= self.inflight <= 65535 or not 5 <= self.keepalive <= 3600:
            raise InputError(f"MQTT inflight 1-65535 and keepalive 5-3600 s, got {self.inflight}, {self.keepalive}")
        if not (self.flush_timeout >= 0 and 0 < self.min_delay <= self.max_delay):
            raise InputError("MQTT flush_timeout >= 0 and 0 < min_delay <= max_delay")

    @classmethod
    def from_address(cls, address: str, **kw: Any) -> MqttOptions:
        """``HOST``, ``HOST:PORT``, ``:PORT``, ``[IPv6]:PORT`` (empty host: loopback) -> options."""
        host, port = cls.host, cls.port
        text = address.strip()
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d*))?|([^:]*)(?::(\d*))?", text)
        if m is None or text.count(":") > 1 and not text.startswith("["):
            raise InputError(f"--mqtt {address!r} is not HOST[:PORT]", "e.g. --mqtt 127.0.0.1:1883, or [::1]:1883")
        host = m.group(1) or m.group(3) or host
        p = m.group(2) if m.group(1) else m.group(4)
        if p:
            port = int(p)
        elif p == "":
            raise InputError(f"--mqtt {address!r} has no port after ':'", "e.g. --mqtt 127.0.0.1:1883")
        return cls(host=host, port=port, **kw)

    def topic_of(self, stream: str) -> str:
        return f"{self.topic.rstrip('/')}/{_STREAM_BAD.sub('_', stream) or '_'}"


def import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as err:
        raise MissingDependencyError("--mqtt needs paho-mqtt, which is not installed",
                                     "pip install 'detnet-trt[mqtt]' (or pip install paho-mqtt)") from err
    return mqtt


class MqttSink(Sink):
    """Publishes each frame's detections (or its track events) to an MQTT broker; see the module."""

    order = 5

    def __init__(self, options: MqttOptions = MqttOptions()) -> None:
        mqtt = import_paho()
        self.options = options
        self._ok = mqtt.MQTT_ERR_SUCCESS
        self._no_conn = mqtt.MQTT_ERR_NO_CONN
        self._cv = threading.Condition()
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._inflight: dict[int, float] = {}  # mid -> when handed to the client
        self._acked_early: set[int] = set()  # acknowledged before publish() returned its mid
        self._in_call = 0  # messages inside client.publish()
        self._connected = False
        self._closing = False
        self._stop = False
        self._warned_down = False
        self.counts = dict(messages=0, delivered=0, dropped=0, failed=0, lost=0, connects=0, disconnects=0)
        client_id = options.client_id or f"detnet-trt-{os.getpid()}-{id(self):x}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_connect_fail = self._on_connect_fail
        self._client.max_inflight_messages_set(options.inflight)
        self._client.reconnect_delay_set(options.min_delay, options.max_delay)  # type: ignore[arg-type]
        self._client.connect_async(options.host, options.port, options.keepalive)
        self._client.loop_start()  # paho's network thread: connects, reconnects, sends
        self._thread = threading.Thread(target=self._publish_loop, name="camera-mqtt", daemon=True)
        self._thread.start()
        log.info("MQTT: publishing to %s:%d, topic %s/<stream>, QoS %d, one message per %s", options.host,
                 options.port, options.topic.rstrip("/"), options.qos, options.per)

    # --- paho callbacks (its network thread) --------------------------------------------------
    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%d refused the connection: %s", self.options.host, self.options.port, reason)
            return
        with self._cv:
            self._connected = True
            self.counts["connects"] += 1
            again = self.counts["connects"] > 1
            self._warned_down = False
            self._cv.notify_all()
        if again:
            log.info("MQTT: reconnected to %s:%d", self.options.host, self.options.port)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        with self._cv:
            was = self._connected
            self._connected = False
            if was and not self._closing:  # the broker went away (not our own disconnect at close)
                self.counts["disconnects"] += 1
            if self.options.qos == 0:  # QoS 0 packets not yet written are gone; QoS 1 ones are sent again
                self.counts["lost"] += len(self._inflight)
                self._inflight.clear()
            self._cv.notify_all()
        if was and not self._closing:
            log.warning("MQTT: lost the broker %s:%d (%s); reconnecting, inference goes on", self.options.host,
                        self.options.port, reason)

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        if not self._warned_down:
            self._warned_down = True
            log.warning("MQTT: cannot connect to %s:%d; retrying every %g-%g s, messages are queued (at most %d)",
                        self.options.host, self.options.port, self.options.min_delay, self.options.max_delay,
                        self.options.queue)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any = None, _props: Any = None) -> None:
        with self._cv:
            if self._inflight.pop(mid, None) is not None:
                self.counts["delivered"] += 1
            else:
                self._acked_early.add(mid)
            self._cv.notify_all()

    # --- the publisher thread ------------------------------------------------------------------
    def _next(self) -> tuple[str, bytes] | None:
        with self._cv:
            while not self._stop:
                if self._queue and self._connected and len(self._inflight) < self.options.inflight:
                    self._in_call += 1
                    return self._queue.popleft()
                if self._closing and not self._queue:
                    return None
                self._cv.wait(0.1)
            return None

    def _publish_loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            topic, payload = item
            try:
                info = self._client.publish(topic, payload, qos=self.options.qos)
                rc, mid = info.rc, info.mid
            except (ValueError, OSError) as err:  # a bad topic or payload: the message is lost
                log.warning("MQTT: cannot publish on %s: %s", topic, err)
                rc, mid = None, -1
            with self._cv:
                self._in_call -= 1
                # QoS 1 without a connection stays in paho's queue and goes out after the reconnect
                kept = rc == self._ok or (rc == self._no_conn and self.options.qos == 1)
                if not kept:
                    self.counts["failed"] += 1
                elif mid in self._acked_early:
                    self._acked_early.discard(mid)
                    self.counts["delivered"] += 1
                else:
                    self._inflight[mid] = time.monotonic()

    # --- the sink ------------------------------------------------------------------------------
    def _put(self, topic: str, message: dict[str, Any]) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        with self._cv:
            self.counts["messages"] += 1
            if len(self._queue) >= self.options.queue:
                self._queue.popleft()
                self.counts["dropped"] += 1
            self._queue.append((topic, payload))
            self._cv.notify_all()

    def write(self, result: FrameResult) -> None:
        stream = result.stream if result.stream is not None else str(result.stream_index)
        topic = self.options.topic_of(stream)
        if self.options.per == "frame":
            self._put(topic, {"stream": stream, **result.record()})
            return
        tracks = result.tracks
        for ev in tracks.events if tracks is not None else ():
            self._put(topic, {"stream": stream, "frame": result.index, "timestamp": round(result.frame.timestamp, 6),
                              **ev.to_dict(result.class_names), **({"reason": "lost"} if ev.kind == "end" else {})})

    def tracks_ended(self, stream: str | None, stream_index: int, events: Any, class_names: Any,
                     reason: str = "stopped") -> None:
        """The stream ended or the run stopped with these tracks alive: their end events (``"reason"``:
        ``"stream ended"`` or ``"stopped"``)."""
        if self.options.per != "track":
            return
        name = stream if stream is not None else str(stream_index)
        for ev in events:
            self._put(self.options.topic_of(name), {"stream": name, "frame": None, "timestamp": round(time.time(), 6),
                                                    **ev.to_dict(class_names), "reason": reason})

    def pending(self) -> int:
        """Messages not yet delivered: queued here or in flight."""
        with self._cv:
            return len(self._queue) + len(self._inflight) + self._in_call

    def stats(self) -> dict[str, Any]:
        """``{"mqtt": counters()}`` for the run summary."""
        return {"mqtt": self.counters()}

    def counters(self) -> dict[str, Any]:
        """Counters: ``messages`` given to the sink, ``delivered``, ``undelivered`` (``dropped`` from
        a full queue, ``failed`` refused by the client, ``lost`` in flight at a disconnect (QoS 0),
        ``pending`` still queued or in flight), ``connects``, ``disconnects``."""
        with self._cv:
            c = dict(self.counts)
            c["pending"] = len(self._queue) + len(self._inflight) + self._in_call
        c["undelivered"] = c["dropped"] + c["failed"] + c["lost"] + c["pending"]
        o = self.options
        return {"broker": f"{o.host}:{o.port}", "topic": f"{o.topic.rstrip('/')}/<stream>", "qos": o.qos,
                "per": o.per, **c}

    def close(self) -> None:
        """Deliver what is queued (up to ``flush_timeout`` seconds while connected), then disconnect."""
        if self._stop:
            return
        deadline = time.monotonic() + self.options.flush_timeout
        with self._cv:
            self._closing = True
            self._cv.notify_all()
            while (self._queue or self._inflight) and self._connected and time.monotonic() < deadline:
                self._cv.wait(0.05)
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=2.0)
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        s = self.counters()
        (log.warning if s["undelivered"] else log.info)(
            "MQTT: %d messages, %d delivered, %d undelivered (%d dropped from a full queue, %d refused, %d lost in "
            "flight, %d left at the end); %d disconnects", s["messages"], s["delivered"], s["undelivered"], s["dropped"],
            s["failed"], s["lost"], s["pending"], s["disconnects"])


__all__ = ["PERS", "MqttOptions", "MqttSink"]
