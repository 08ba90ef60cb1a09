"""Frame sources for the camera loop: USB/V4L2 cameras, Jetson CSI cameras, RTSP/HTTP streams,
video files and image folders, named as users write them.

=================  ===========================================================================
``--source``       opens
=================  ===========================================================================
``0``, ``1``       USB camera by index (V4L2 on Linux)
``/dev/video0``    V4L2 device by path
``csi://0``        Jetson CSI camera ``sensor-id=0`` through a GStreamer ``nvarguscamerasrc``
                   pipeline (needs an OpenCV built with GStreamer: JetPack's, not PyPI's)
``rtsp://...``     RTSP stream, low latency: a GStreamer ``rtspsrc latency=0`` pipeline when
                   OpenCV has GStreamer, otherwise FFmpeg over TCP without input buffering
``http(s)://...``  HTTP stream (MJPEG, HLS, ...) through FFmpeg
``a ! b ! appsink`` a raw GStreamer pipeline
a video file       every frame, in order
an image folder    every image (sorted by name), in order
=================  ===========================================================================

Live sources (cameras, streams) are read by a capture thread that keeps only the newest frame, so
latency does not grow when inference is slower than the camera; frames overwritten before the
loop took them are counted as dropped. A live source that fails is reopened with exponential
backoff (logged and counted) unless reconnecting is turned off. Files and folders deliver every
frame in order and end at the last one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from ...core.errors import DetnetError
from ...core.images import IMAGE_SUFFIXES, is_image_file, list_images

log = logging.getLogger("detnet_trt.camera")

KINDS = ("usb", "v4l2", "csi", "rtsp", "http", "gstreamer", "file", "folder")
LIVE_KINDS = ("usb", "v4l2", "csi", "rtsp", "http", "gstreamer")

# FFmpeg options for RTSP without GStreamer: TCP (no UDP packet loss smearing frames), no input
# buffering, low-delay decoding, short timeouts. Format of OPENCV_FFMPEG_CAPTURE_OPTIONS:
# "key;value|key;value". A value set by the user in the environment is respected as is.
FFMPEG_RTSP_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay|max_delay;500000"
_FFMPEG_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_ENV_LOCK = threading.Lock()


class SourceError(DetnetError):
    """A ``--source`` that cannot be understood or opened."""


# --------------------------------------------------------------------------------------------
# What OpenCV can do here
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def opencv_video_backends() -> dict[str, bool]:
    """Video I/O backends of this OpenCV build, from ``cv2.getBuildInformation()``.

    >>> opencv_video_backends()   # e.g. {'GStreamer': False, 'FFMPEG': True, 'v4l/v4l2': True}
    """
    info = cv2.getBuildInformation()
    found: dict[str, bool] = {}
    in_video = False
    for line in info.splitlines():
        stripped = line.strip()
        if stripped.startswith("Video I/O:"):
            in_video = True
            continue
        if in_video:
            if line and not line.startswith("    "):  # next top-level section
                break
            m = re.match(r"^ {4}(\S[^:]*):\s+(\S+)", line)
            if m:
                found[m.group(1).strip()] = m.group(2).upper().startswith("YES")
    return found


def has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (JetPack's is; PyPI's ``opencv-python`` is not)."""
    return opencv_video_backends().get("GStreamer", False)


def _require_gstreamer(what: str) -> None:
    if not has_gstreamer():
        raise SourceError(
            f"{what} needs an OpenCV built with GStreamer; this OpenCV {cv2.__version__} "
            f"({Path(cv2.__file__).parent}) has no GStreamer support",
            "on a Jetson use JetPack's OpenCV (sudo apt install python3-opencv, create the venv with "
            "--system-site-packages, and pip uninstall opencv-python opencv-python-headless from it)",
        )


# --------------------------------------------------------------------------------------------
# Parsing --source
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source``: ``kind`` (one of :data:`KINDS`) and what to open.

    ``target`` is the camera index (``usb``), device path (``v4l2``), sensor id (``csi``), URL,
    GStreamer pipeline, or file/folder path. ``options`` holds query options of ``csi://``
    (``width``, ``height``, ``fps``, ``flip``) or capture settings given on the command line.
    """

    kind: str
    target: str
    text: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    def describe(self) -> str:
        return f"{self.kind}:{_redact(self.text)}"

    @property
    def label(self) -> str:
        """How logs and summaries name the source: what the user wrote (a password hidden), a
        USB camera as ``camera N``, a raw pipeline by its first element."""
        if self.kind == "usb":
            return f"camera {self.target}"
        if self.kind == "gstreamer":
            return f"gst:{self.target.split('!')[0].strip()} ! ..."
        if self.kind in ("file", "folder"):
            return self.target
        return _redact(self.text)

    def default_name(self) -> str:
        """A short stream name for multi-stream runs (file stem, ``usb0``, ``csi0``, the host of a
        URL), made of ``[A-Za-z0-9_.-]`` so that file names can be derived from it."""
        if self.kind in ("file", "folder"):
            base = Path(self.target).stem or Path(self.target).name
        elif self.kind == "usb":
            base = f"usb{self.target}"
        elif self.kind == "v4l2":
            base = Path(self.target).name
        elif self.kind == "csi":
            base = f"csi{self.target}"
        elif self.kind in ("rtsp", "http"):
            base = urlsplit(self.text).hostname or self.kind
        else:
            base = "gst"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._") or self.kind


def _redact(text: str) -> str:
    """Hide a password in ``rtsp://user:pass@host`` for logs and records."""
    return re.sub(r"(://[^:/@]+:)[^@/]+@", r"\1***@", text)


def parse_source(text: str | int) -> SourceSpec:
    """Understand a ``--source`` value (see the module docstring); raises :class:`SourceError`."""
    s = str(text).strip()
    if not s:
        raise SourceError("empty --source", "give a camera index (0), /dev/video0, csi://0, rtsp://..., a video file or a folder")
    if re.fullmatch(r"\d+", s):
        return SourceSpec("usb", s, s)
    if re.fullmatch(r"/dev/video\d+", s):
        return SourceSpec("v4l2", s, s)
    lower = s.lower()
    if lower.startswith("csi://"):
        parts = urlsplit(s)
        sensor = parts.netloc or parts.path.lstrip("/")
        if not re.fullmatch(r"\d+", sensor or ""):
            raise SourceError(f"bad CSI source {s!r}", "write csi://<sensor-id>, e.g. csi://0 or csi://0?width=1280&height=720&fps=30")
        opts = dict(parse_qsl(parts.query))
        bad = sorted(set(opts) - {"width", "height", "fps", "flip"})
        if bad:
            raise SourceError(f"unknown CSI options {bad} in {s!r}", "known options: width, height, fps, flip")
        for k, v in opts.items():
            if not v.isdigit():
                raise SourceError(f"CSI option {k}={v!r} in {s!r} is not a whole number")
        return SourceSpec("csi", sensor, s, opts)
    if lower.startswith(("rtsp://", "rtsps://")):
        return SourceSpec("rtsp", s, s)
    if lower.startswith(("http://", "https://")):
        return SourceSpec("http", s, s)
    if lower.startswith("gst:") or " ! " in s:
        return SourceSpec("gstreamer", s[4:].strip() if lower.startswith("gst:") else s, s)
    p = Path(s).expanduser()
    if p.is_dir():
        return SourceSpec("folder", str(p), s)
    if p.is_file():
        return SourceSpec("folder" if is_image_file(p) else "file", str(p), s)
    if "://" in s:
        raise SourceError(f"unsupported source scheme in {_redact(s)!r}", "use csi://, rtsp://, http(s)://, a camera index, a file or a folder")
    raise SourceError(
        f"source {s!r} is not a camera index, device, URL, file or folder (no such file or folder)",
        "check the path; cameras are 0, /dev/video0 or csi://0",
    )


# --------------------------------------------------------------------------------------------
# GStreamer pipelines
# --------------------------------------------------------------------------------------------
def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """GStreamer pipeline for a Jetson CSI camera: ``nvarguscamerasrc`` -> BGR frames in ``appsink``.

    ``nvvidconv`` converts NVMM NV12 to BGRx on the VIC; ``appsink drop=true max-buffers=1`` keeps
    only the newest frame inside GStreamer too.
    """
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM),width={int(width)},height={int(height)},framerate={int(fps)}/1,format=NV12 ! "
        f"nvvidconv flip-method={int(flip)} ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def rtsp_pipeline(url: str, latency_ms: int = 0) -> str:
    """Low-latency GStreamer pipeline for an RTSP URL (``rtspsrc`` jitter buffer of ``latency_ms``)."""
    if any(c in url for c in ' !"\''):
        raise SourceError(f"RTSP URL {_redact(url)!r} contains spaces, quotes or '!'", "percent-encode them")
    return (
        f"rtspsrc location={url} latency={int(latency_ms)} ! decodebin ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


# --------------------------------------------------------------------------------------------
# Opening captures
# --------------------------------------------------------------------------------------------
class StopLike(Protocol):
    """Anything with ``is_set()`` (a ``threading.Event``): ``read(stop)`` returns ``None`` once it is set."""

    def is_set(self) -> bool: ...


class Capture(Protocol):
    """What the sources need from a ``cv2.VideoCapture`` (tests pass fakes with the same methods)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def isOpened(self) -> bool: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@contextlib.contextmanager
def _ffmpeg_options(options: str) -> Iterator[None]:
    """Set OPENCV_FFMPEG_CAPTURE_OPTIONS only while one capture opens (OpenCV reads it at open).

    A value the user exported is kept; the variable is restored afterwards, under a lock so that
    two captures opening at once do not see each other's options.
    """
    with _ENV_LOCK:
        old = os.environ.get(_FFMPEG_ENV)
        if old is None:
            os.environ[_FFMPEG_ENV] = options
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(_FFMPEG_ENV, None)


def _timeouts(ms: int) -> list[int]:
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(ms), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(ms)]


def open_capture(spec: SourceSpec, *, width: int | None = None, height: int | None = None,
                 fps: int | None = None, timeout_ms: int = 5000) -> cv2.VideoCapture:
    """Open ``spec`` with OpenCV (any kind but ``folder``); raises :class:`SourceError` if it fails.

    ``width``/``height``/``fps`` request a capture mode from USB/V4L2 cameras and set the caps of
    the CSI pipeline (the camera may pick the nearest mode it has).
    """
    kind = spec.kind
    if kind in ("usb", "v4l2"):
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        target: Any = int(spec.target) if kind == "usb" else spec.target
        cap = cv2.VideoCapture(target, api)
        if cap.isOpened():
            if width and height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame; not every driver honours it
        hint = "check the camera is connected (v4l2-ctl --list-devices) and not used by another program"
    elif kind == "csi":
        _require_gstreamer(f"CSI camera {spec.text!r}")
        o = spec.options
        pipe = csi_pipeline(
            int(spec.target),
            int(o.get("width", width or 1280)),
            int(o.get("height", height or 720)),
            int(o.get("fps", fps or 30)),
            int(o.get("flip", 0)),
        )
        log.info("CSI pipeline: %s", pipe)
        cap = cv2.VideoCapture(pipe, cv2.CAP_GSTREAMER)
        hint = "check the sensor id and the ribbon cable, and that nvargus-daemon runs (sudo systemctl restart nvargus-daemon)"
    elif kind == "gstreamer":
        _require_gstreamer("a GStreamer pipeline source")
        cap = cv2.VideoCapture(spec.target, cv2.CAP_GSTREAMER)
        hint = "test the pipeline with gst-launch-1.0; it must end in appsink"
    elif kind == "rtsp":
        if has_gstreamer():
            cap = cv2.VideoCapture(rtsp_pipeline(spec.target), cv2.CAP_GSTREAMER)
        else:
            with _ffmpeg_options(FFMPEG_RTSP_OPTIONS):
                cap = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, _timeouts(timeout_ms))
        hint = "check the URL, credentials and that the stream plays (ffplay -rtsp_transport tcp URL)"
    elif kind == "http":
        cap = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, _timeouts(timeout_ms))
        hint = "check the URL and that the stream plays (ffplay URL)"
    elif kind == "file":
        cap = cv2.VideoCapture(spec.target)
        hint = "check that the file is a video OpenCV/FFmpeg can decode (ffprobe FILE)"
    else:
        raise SourceError(f"open_capture cannot open a {kind} source", "use open_source")
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open {kind} source {_redact(spec.text)!r}", hint)
    return cap


# --------------------------------------------------------------------------------------------
# Frame sources
# --------------------------------------------------------------------------------------------
@dataclass
class Frame:
    """One captured frame: BGR ``image``, its ``index`` in the source (gaps = dropped frames),
    ``t_capture`` (``time.perf_counter()`` when it arrived), ``timestamp`` (Unix time) and, for
    files, ``pts`` (position in the video, seconds)."""

    image: np.ndarray
    index: int
    t_capture: float
    timestamp: float
    pts: float | None = None


class FrameSource:
    """Base class: ``read()`` returns the next :class:`Frame` or ``None`` at the end; ``close()``."""

    live = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames_read = 0  # frames that came out of the device/file
        self.dropped = 0  # live: frames replaced by a newer one before the loop took them
        self.reconnects = 0  # live: successful reopenings
        self.reconnect_attempts = 0
        self.fps: float | None = None  # nominal rate, when the source knows it
        self.kind: str | None = None  # the SourceSpec kind, when opened by open_source
        # called (without arguments, on the capture thread) after each new frame and at the end,
        # by the sources that capture on their own thread (LiveSource, ReadAheadSource)
        self.on_frame: Callable[[], None] | None = None

    def read(self, stop: StopLike | None = None) -> Frame | None:
        raise NotImplementedError

    def poll(self) -> Frame | None:
        """The frame ready now, without waiting (``None``: none yet); only sources that capture
        on their own thread (:class:`LiveSource`, :class:`ReadAheadSource`) have it."""
        raise NotImplementedError(f"{type(self).__name__} has no capture thread; wrap it in ReadAheadSource")

    @property
    def ended(self) -> bool:
        """True once no frame will come any more (threaded sources; the others say so by ``read``)."""
        return False

    @property
    def connected(self) -> bool:
        """False while a live source is reconnecting (a batcher does not wait for it then)."""
        return True

    def _notify(self) -> None:
        cb = self.on_frame
        if cb is not None:
            cb()

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "source_kind": self.kind,
            "live": self.live,
            "frames_read": self.frames_read,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "reconnect_attempts": self.reconnect_attempts,
        }


class VideoFileSource(FrameSource):
    """Every frame of a video file, in order; ``read()`` returns ``None`` after the last one."""

    def __init__(self, cap: Capture, name: str) -> None:
        super().__init__(name)
        self._cap: Capture | None = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self, stop: StopLike | None = None) -> Frame | None:
        if self._cap is None:
            return None
        ok, img = self._cap.read()
        if not ok or img is None:
            if self.frame_count > 0 and self.frames_read < self.frame_count - 1:
                log.warning("%s: decoding stopped at frame %d of %d", self.name, self.frames_read, self.frame_count)
            self.close()
            return None
        pts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        frame = Frame(img, self.frames_read, time.perf_counter(), time.time(), pts)
        self.frames_read += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(FrameSource):
    """Every image of a folder (sorted by name), in order. Unreadable files are skipped with a warning."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        p = Path(folder)
        files = [p] if p.is_file() else list_images(p)
        if not files:
            raise SourceError(f"no images in {p}", f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
        super().__init__(str(p))
        self.files = files
        self._next = 0
        self.skipped = 0

    def read(self, stop: StopLike | None = None) -> Frame | None:
        while self._next < len(self.files):
            f = self.files[self._next]
            self._next += 1
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                self.skipped += 1
                log.warning("%s: cannot decode, skipped", f)
                continue
            frame = Frame(img, self.frames_read, time.perf_counter(), time.time(), None)
            self.frames_read += 1
            return frame
        return None


class LiveSource(FrameSource):
    """A camera or stream read by a capture thread that keeps only the newest frame.

    ``opener()`` returns an opened :class:`Capture` or raises (:class:`SourceError`, ``OSError``,
    ``cv2.error``); it is called once in the constructor (its failure is the caller's error) and
    again, with exponential backoff from ``backoff`` to ``max_backoff`` seconds, each time the
    capture fails while ``reconnect`` is on. Without ``reconnect`` a failure ends the source.
    With ``wait_for_open`` (and ``reconnect``) a first opening that fails is logged and retried
    the same way instead (a multi-stream run starts while one camera is still down).
    """

    live = True

    def __init__(  # reason: the opener, the name and four documented knobs of reconnecting
        self,
        opener: Callable[[], Capture],
        name: str,
        *,
        reconnect: bool = True,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        wait_for_open: bool = False,
    ) -> None:
        super().__init__(name)
        self._opener = opener
        self.reconnect = reconnect
        self.backoff, self.max_backoff = backoff, max_backoff
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._connected = False
        self._closing = threading.Event()
        cap: Capture | None
        try:
            cap = opener()
        except Exception as err:
            if not (wait_for_open and reconnect):
                raise
            log.warning("%s: cannot open (%s); retrying in the background", name, err)
            cap = None
        if cap is not None:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 0 < fps < 1000 else None
            self._connected = True
        self._thread = threading.Thread(target=self._run, args=(cap,), name=f"capture[{name}]", daemon=True)
        self._thread.start()

    @property
    def ended(self) -> bool:
        return self._ended and self._latest is None

    @property
    def connected(self) -> bool:
        return self._connected

    # --- capture thread ------------------------------------------------------------------
    def _run(self, cap: Capture | None) -> None:
        try:
            while not self._closing.is_set():
                if cap is None:
                    self._connected = False
                    cap = self._reopen()
                    if cap is None:
                        break
                    self._connected = True
                ok, img = cap.read()
                if self._closing.is_set():
                    break
                if not ok or img is None:
                    log.warning("%s: capture failed after %d frames", self.name, self.frames_read)
                    with contextlib.suppress(Exception):
                        cap.release()
                    cap = None
                    self._connected = False
                    if not self.reconnect:
                        break
                    self._notify()  # a batcher stops waiting for this source
                    continue
                frame = Frame(img, self.frames_read, time.perf_counter(), time.time(), None)
                with self._cond:
                    self.frames_read += 1
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify_all()
                self._notify()
        except Exception:
            log.exception("%s: capture thread failed", self.name)
        finally:
            if cap is not None:
                with contextlib.suppress(Exception):
                    cap.release()
            with self._cond:
                self._ended = True
                self._connected = False
                self._cond.notify_all()
            self._notify()

    def _reopen(self) -> Capture | None:
        delay = self.backoff
        while not self._closing.wait(delay):
            self.reconnect_attempts += 1
            try:
                cap = self._opener()
            except Exception as err:  # noqa: BLE001 - any failure to open means "try again later"
                log.warning("%s: reconnect attempt %d failed (%s); next in %.1f s",
                            self.name, self.reconnect_attempts, err, min(delay * 2, self.max_backoff))
                delay = min(delay * 2, self.max_backoff)
                continue
            self.reconnects += 1
            log.warning("%s: reconnected (attempt %d, reconnect %d)", self.name, self.reconnect_attempts, self.reconnects)
            return cap
        return None

    # --- consumer side -------------------------------------------------------------------
    def read(self, stop: StopLike | None = None) -> Frame | None:
        """The newest frame not yet returned; waits for one. ``None`` when the source ended
        (failed without reconnect, or closed) or ``stop`` was set."""
        with self._cond:
            while self._latest is None:
                if self._ended or (stop is not None and stop.is_set()):
                    return None
                self._cond.wait(0.05)
            frame, self._latest = self._latest, None
            return frame

    def poll(self) -> Frame | None:
        with self._cond:
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        _join(self._thread, self.name)


def _join(thread: threading.Thread, name: str) -> None:
    if thread.is_alive() and thread is not threading.current_thread():
        thread.join(timeout=5.0)
        if thread.is_alive():
            log.warning("%s: capture thread did not stop within 5 s (blocked in the driver)", name)


class ReadAheadSource(FrameSource):
    """An in-order source (video file, image folder) decoded one frame ahead on its own thread.

    Every frame, in order (nothing is dropped: the thread waits until the frame it holds is
    taken); :meth:`poll` takes the decoded frame without waiting, so a batcher can gather frames
    of many sources; a frame's ``t_capture`` is when it was taken. A failing read (a corrupt file) is logged and ends this source only
    (``error`` says why).
    """

    def __init__(self, inner: FrameSource) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.fps, self.kind = inner.fps, inner.kind
        self.error: str | None = None
        self._cond = threading.Condition()
        self._next: Frame | None = None
        self._ended = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"decode[{inner.name}]", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                frame = self.inner.read(self._closing)
                if frame is None:
                    break
                with self._cond:
                    while self._next is not None and not self._closing.is_set():
                        self._cond.wait(0.05)
                    self._next = frame
                self._notify()
        except Exception as err:  # noqa: BLE001 - ends this source only
            self.error = f"{type(err).__name__}: {err}"
            log.error("%s: reading failed (%s); this source ends", self.name, err)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._notify()

    @property
    def ended(self) -> bool:
        return self._ended and self._next is None

    @property
    def frames_read(self) -> int:  # type: ignore[override]
        return self.inner.frames_read

    @frames_read.setter
    def frames_read(self, value: int) -> None:
        pass  # counted by the inner source

    def poll(self) -> Frame | None:
        with self._cond:
            frame, self._next = self._next, None
            self._cond.notify_all()
        return self._taken(frame)

    def read(self, stop: StopLike | None = None) -> Frame | None:
        with self._cond:
            while self._next is None:
                if self._ended or (stop is not None and stop.is_set()):
                    return None
                self._cond.wait(0.05)
            frame, self._next = self._next, None
            self._cond.notify_all()
        return self._taken(frame)

    @staticmethod
    def _taken(frame: Frame | None) -> Frame | None:
        """A file's frame is "captured" when the loop takes it (as :class:`VideoFileSource` reads
        it on demand), not when it was decoded ahead: latency then means the same for both."""
        if frame is not None:
            frame.t_capture = time.perf_counter()
        return frame

    def stats(self) -> dict[str, Any]:
        return {**self.inner.stats(), "source_kind": self.kind}

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        _join(self._thread, self.name)
        self.inner.close()


def open_source(  # reason: the source plus the documented capture and reconnect settings
    source: str | int | SourceSpec,
    *,
    reconnect: bool | None = None,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
    backoff: float = 0.5,
    max_backoff: float = 10.0,
    threaded: bool = False,
) -> FrameSource:
    """Open a ``--source`` as a :class:`FrameSource` named by :attr:`SourceSpec.label`.

    ``reconnect=None`` means on for live sources (cameras, streams); files and folders never
    reconnect (their end is the end of the run). ``threaded`` (multi-stream runs): files and
    folders are decoded ahead on their own thread (:class:`ReadAheadSource`), and a camera that
    cannot be opened yet is retried in the background when reconnecting is on.
    """
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    src: FrameSource
    if spec.kind in ("folder", "file"):
        src = ImageFolderSource(spec.target) if spec.kind == "folder" else VideoFileSource(open_capture(spec), spec.label)
        src.kind = spec.kind
        return ReadAheadSource(src) if threaded else src

    def opener() -> Capture:
        return open_capture(spec, width=width, height=height, fps=fps)

    src = LiveSource(
        opener, spec.label, reconnect=True if reconnect is None else reconnect,
        backoff=backoff, max_backoff=max_backoff, wait_for_open=threaded,
    )
    src.kind = spec.kind
    return src
