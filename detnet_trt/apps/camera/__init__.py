"""The camera loop: cameras, streams, video files and image folders through any backend.

``detnet-trt camera`` calls :func:`run_camera`; :func:`run_loop` is the loop itself for callers
that bring their own opened source and sinks. Both take a :class:`CameraOptions`.
"""

from .loop import StopFlag, run_camera, run_loop, stop_on_signals
from .options import CameraOptions
from .sinks import FrameResult, JsonLinesSink, Sink, VideoRecorder, WindowSink, display_available, make_sinks
from .sources import (
    Frame,
    FrameSource,
    ImageFolderSource,
    LiveSource,
    SourceError,
    SourceSpec,
    VideoFileSource,
    csi_pipeline,
    has_gstreamer,
    open_capture,
    open_source,
    parse_source,
    rtsp_pipeline,
)
from .timing import LoopTimer, format_summary

__all__ = [
    "CameraOptions",
    "Frame",
    "FrameResult",
    "FrameSource",
    "ImageFolderSource",
    "JsonLinesSink",
    "LiveSource",
    "LoopTimer",
    "Sink",
    "SourceError",
    "SourceSpec",
    "StopFlag",
    "VideoFileSource",
    "VideoRecorder",
    "WindowSink",
    "csi_pipeline",
    "display_available",
    "format_summary",
    "has_gstreamer",
    "make_sinks",
    "open_capture",
    "open_source",
    "parse_source",
    "rtsp_pipeline",
    "run_camera",
    "run_loop",
    "stop_on_signals",
]
