"""``detnet-trt camera``: live detection on a USB/CSI camera, an RTSP stream, a video file or a folder."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.limits import (
    BATCH_TIMEOUT_MS,
    CAPTURE_FPS,
    COUNT,
    FPS,
    MESSAGES,
    PROBABILITY,
    SECONDS,
    SECONDS_OR_ZERO,
    SIDE,
    TRACK_FRAMES,
)
from ._options import add_backend_args, add_postprocess_args, backend_kwargs, number, postprocess_config

if TYPE_CHECKING:
    from ..apps.camera.options import CameraOptions


def add_camera_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.apps.camera.options.CameraOptions`."""
    view = p.add_mutually_exclusive_group()
    view.add_argument("--show", dest="show", action="store_true", default=None,
                      help="open a window (default: when DISPLAY/WAYLAND_DISPLAY is set)")
    view.add_argument("--headless", dest="show", action="store_false", help="never open a window")
    p.add_argument("--jsonl", metavar="OUT", help="write one JSON record per frame (frame, timestamp, detections)")
    p.add_argument("--record", metavar="OUT.mp4", help="record the annotated video (mp4v)")
    p.add_argument("--record-fps", type=number(FPS), help="frame rate written into --record (default: the source's, else 30)")
    p.add_argument("--stats-json", metavar="F", help="write the run summary (per-stage mean/p50/p99, FPS, dropped) as JSON")
    p.add_argument("--max-frames", type=number(COUNT), metavar="N", help="stop after N processed frames")
    p.add_argument("--duration", type=number(SECONDS), metavar="S", help="stop after S seconds")
    p.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=None,
                   help="reopen a live source that fails, with backoff (default: on for cameras and streams)")
    p.add_argument("--no-overlap", dest="overlap", action="store_false",
                   help="run capture, pre-processing, inference, NMS and sinks in turn on one thread "
                        "instead of overlapping them (lowest latency, lower FPS)")
    p.add_argument("--width", type=number(SIDE), help="camera capture width (USB/CSI)")
    p.add_argument("--height", type=number(SIDE), help="camera capture height (USB/CSI)")
    p.add_argument("--fps", type=number(CAPTURE_FPS), help="camera capture frame rate (USB/CSI)")
    p.add_argument("--log-interval", type=number(SECONDS_OR_ZERO), default=5.0, metavar="S",
                   help="log FPS and per-stage timing every S seconds (0: never; default 5)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--batch-timeout-ms", type=number(BATCH_TIMEOUT_MS), default=30.0, metavar="MS",
                   help="several sources: how long a batch waits for the other streams after its first frame "
                        "arrived (0 to 10000; default 30)")
    _add_track_and_mqtt_args(p)


def _add_track_and_mqtt_args(p: argparse.ArgumentParser) -> None:
    """``--track*`` -> :class:`~detnet_trt.apps.camera.tracking.TrackerConfig`, ``--mqtt*`` ->
    :class:`~detnet_trt.apps.camera.mqtt_sink.MqttOptions`."""
    g = p.add_argument_group("tracking and events")
    g.add_argument("--track", action="store_true",
                   help="give each detection a track id that stays while the object is in view (ByteTrack, per stream)")
    g.add_argument("--track-low", type=number(PROBABILITY), default=0.1, metavar="S",
                   help="with --track: lowest score that can continue a track (--conf starts one; default %(default)s)")
    g.add_argument("--track-buffer", type=number(TRACK_FRAMES), default=30, metavar="N",
                   help="with --track: frames a lost track is kept for the object to come back (default %(default)s)")
    g.add_argument("--mqtt", nargs="?", const="127.0.0.1:1883", metavar="HOST[:PORT]",
                   help="publish detections to an MQTT broker (alone: 127.0.0.1:1883; needs paho-mqtt)")
    g.add_argument("--mqtt-topic", default="detnet-trt", metavar="PREFIX",
                   help="topic prefix: messages go to PREFIX/<stream> (default %(default)s)")
    g.add_argument("--mqtt-per", choices=("frame", "track"), default="frame",
                   help="one message per frame, or per track start/end (needs --track; default %(default)s)")
    g.add_argument("--mqtt-qos", choices=("0", "1"), default="1", help="MQTT QoS (default %(default)s)")
    g.add_argument("--mqtt-queue", type=number(MESSAGES), default=1000, metavar="N",
                   help="messages held while the broker is away; the oldest are dropped and counted (default %(default)s)")


def camera_options(args: argparse.Namespace) -> CameraOptions:
    from ..apps.camera.mqtt_sink import MqttOptions
    from ..apps.camera.options import CameraOptions
    from ..apps.camera.tracking import TrackerConfig

    return CameraOptions(
        show=args.show, jsonl=args.jsonl, record=args.record, record_fps=args.record_fps, stats_json=args.stats_json,
        max_frames=args.max_frames, duration=args.duration, reconnect=args.reconnect, overlap=args.overlap,
        width=args.width, height=args.height, fps=args.fps, log_interval=args.log_interval or None, force=args.force,
        batch_timeout_ms=args.batch_timeout_ms,
        track=TrackerConfig(low=args.track_low, buffer=args.track_buffer) if args.track else None,
        mqtt=None if args.mqtt is None else MqttOptions.from_address(
            args.mqtt, topic=args.mqtt_topic, per=args.mqtt_per, qos=int(args.mqtt_qos), queue=args.mqtt_queue),
    )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "camera",
        help="detect on a camera, RTSP stream, video file or image folder, with per-stage timing",
        description=(
            "Run a model (checkpoint .pt, ONNX, TensorRT engine) on a camera or video: capture -> "
            "letterbox -> infer -> NMS -> window / JSON lines / recorded video. Sources: 0 or "
            "/dev/video0 (USB, V4L2), csi://0 (Jetson CSI, needs OpenCV with GStreamer), rtsp://..., "
            "a video file, an image folder. Several --source (or a --sources file) run as one batched "
            "stream per source. Ctrl-C or SIGTERM stops cleanly and prints the summary."
        ),
    )
    p.add_argument("--model", required=True, help="checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine)")
    p.add_argument("--source", action="append", default=[],
                   help="0 | /dev/video0 | csi://0[?width=W&height=H&fps=F&flip=N] | rtsp://... | http(s)://... | VIDEO | "
                        "FOLDER; repeat it for several streams, batched into one backend call")
    p.add_argument("--sources", metavar="FILE",
                   help="a text file of sources, one per line: URI or NAME=URI (# comments, blank lines skipped)")
    add_camera_args(p)
    add_postprocess_args(p, per="frame")
    add_backend_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from ..apps.camera import format_summary, read_sources_file, run_camera, run_multi_camera
    from ..core.errors import InputError

    sources: list[str | tuple[str | None, str]] = list(args.source)
    if args.sources:
        sources += read_sources_file(args.sources)
    if not sources:
        raise InputError("camera needs a --source (or a --sources file)", "e.g. --source 0 or --source clip.mp4")
    options, post = camera_options(args), postprocess_config(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if len(sources) == 1 and not args.sources:
        summary = run_camera(args.model, args.source[0], options, post, backend_kwargs=backend_kwargs(args, args.model))
    else:
        summary = run_multi_camera(args.model, sources, options, post, backend_kwargs=backend_kwargs(args, args.model))
    print(format_summary(summary), flush=True)
    return 0
