"""The camera loop: cameras, streams, video files and image folders through any backend.

``detnet-trt camera`` calls :func:`run_camera` (one source) or :func:`run_multi_camera` (several,
batched across streams); :func:`run_loop` / :func:`run_multi_loop` are the loops themselves for
callers that bring their own opened sources and sinks. All take a :class:`CameraOptions`.
"""

from .batcher import Batcher, infer_batch
from .loop import StopFlag, run_camera, run_loop, stop_on_signals
from .multi import StreamSpec, read_sources_file, run_multi_camera, run_multi_loop, stream_specs
from .options import CameraOptions
from .sinks import (
    FrameResult,
    GridWindowSink,
    JsonLinesSink,
    PerStreamSink,
    Sink,
    VideoRecorder,
    WindowSink,
    display_available,
    make_sinks,
    make_stream_sinks,
    stream_output,
)
from .sources import (
    Frame,
    FrameSource,
    ImageFolderSource,
    LiveSource,
    ReadAheadSource,
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
from .timing import LoopTimer, MultiTimer, format_summary

__all__ = [
    "Batcher",
    "CameraOptions",
    "Frame",
    "FrameResult",
    "FrameSource",
    "GridWindowSink",
    "ImageFolderSource",
    "JsonLinesSink",
    "LiveSource",
    "LoopTimer",
    "MultiTimer",
    "PerStreamSink",
    "ReadAheadSource",
    "Sink",
    "SourceError",
    "SourceSpec",
    "StreamSpec",
    "StopFlag",
    "VideoFileSource",
    "VideoRecorder",
    "WindowSink",
    "csi_pipeline",
    "display_available",
    "format_summary",
    "has_gstreamer",
    "infer_batch",
    "make_sinks",
    "make_stream_sinks",
    "open_capture",
    "open_source",
    "parse_source",
    "read_sources_file",
    "rtsp_pipeline",
    "run_camera",
    "run_loop",
    "run_multi_camera",
    "run_multi_loop",
    "stop_on_signals",
    "stream_output",
    "stream_specs",
]
