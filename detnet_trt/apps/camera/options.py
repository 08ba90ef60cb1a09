"""The options of ``detnet-trt camera`` as one object: :class:`CameraOptions`.

:func:`~detnet_trt.apps.camera.loop.run_camera` takes it (with a
:class:`~detnet_trt.core.config.PostprocessConfig` for the thresholds); the loop itself,
:func:`~detnet_trt.apps.camera.loop.run_loop`, reads only its limits, ``overlap`` and
``log_interval`` (its caller brings the opened source and sinks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import InputError
from ...core.limits import BATCH_TIMEOUT_MS, CAPTURE_FPS, COUNT, FPS, SECONDS, SECONDS_OR_ZERO, SIDE, check_ranges
from .mqtt_sink import MqttOptions
from .tracking import TrackerConfig

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class CameraOptions:
    """Where results go, when to stop, how the source is opened, how the loop runs.

    Sinks: ``show`` a window (``--show`` / ``--headless``; ``None``: when a display is available),
    ``jsonl`` one JSON record per frame, ``record`` the annotated video at ``record_fps`` (default:
    the source's frame rate, else 30), ``stats_json`` the run summary; ``force`` overwrites them.
    Limits: ``max_frames`` processed frames, ``duration`` seconds (``None``: until the source
    ends or a stop). Source: ``reconnect`` a failing live source (``None``: on for cameras and
    streams), the capture ``width`` / ``height`` / ``fps`` of a USB / CSI camera. Loop:
    ``overlap`` capture, pre-processing, inference and sinks (off: in turn on one thread),
    ``log_interval`` seconds between progress lines (``None``: never). Several sources (see
    :func:`~detnet_trt.apps.camera.multi.run_multi_camera`): ``batch_timeout_ms`` how long a
    batch waits for the other streams after its first frame arrived; ``max_frames`` then counts
    per stream, ``record`` names one video per stream (``out.<stream>.mp4``). Tracking and events:
    ``track`` the tracker's settings (``None``: no tracking), ``mqtt`` the MQTT event sink's
    (``None``: none).
    """

    show: bool | None = None
    jsonl: PathLike | None = None
    record: PathLike | None = None
    record_fps: float | None = None
    stats_json: PathLike | None = None
    max_frames: int | None = None
    duration: float | None = None
    reconnect: bool | None = None
    overlap: bool = True
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    log_interval: float | None = 5.0
    force: bool = False
    batch_timeout_ms: float = 30.0
    track: TrackerConfig | None = None
    mqtt: MqttOptions | None = None

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"--max-frames must be at least 1, got {self.max_frames}")
        if self.duration is not None and not self.duration > 0:
            raise InputError(f"--duration must be positive seconds, got {self.duration}")
        BATCH_TIMEOUT_MS.check("--batch-timeout-ms", self.batch_timeout_ms)
        check_ranges(("--max-frames", COUNT, self.max_frames), ("--duration", SECONDS, self.duration),
                     ("--record-fps", FPS, self.record_fps), ("--width", SIDE, self.width), ("--height", SIDE, self.height),
                     ("--fps", CAPTURE_FPS, self.fps), ("--log-interval", SECONDS_OR_ZERO, self.log_interval))
        if self.mqtt is not None and self.mqtt.per == "track" and self.track is None:
            raise InputError("--mqtt-per track publishes track events, which need --track", "add --track")
        outputs = self.outputs()
        if len({Path(p).resolve() for p in outputs}) != len(outputs):
            raise InputError("--jsonl, --record and --stats-json must be different files")

    def outputs(self) -> list[PathLike]:
        """The output files asked for (``jsonl``, ``record``, ``stats_json``)."""
        return [p for p in (self.jsonl, self.record, self.stats_json) if p is not None]


__all__ = ["CameraOptions"]
