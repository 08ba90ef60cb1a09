"""Where the camera loop's results go: a window, a JSON lines file, a recorded video.

Every sink has ``write(result)`` and ``close()``; ``stop_requested`` tells the loop to stop (the
window's ``q``/``Esc`` key or close button). ``close()`` is always called, also after Ctrl-C or
SIGTERM, so the JSON lines are flushed and the video is finished (playable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ...core.errors import DetnetError
from ...core.fileio import OutputError, check_writable, output_error
from ...runtime.postprocess import Detections
from ..visualize import draw_detections, draw_text
from .sources import Frame
from .tracking import TrackEvent, TrackUpdate

log = logging.getLogger("detnet_trt.camera")


@dataclass
class FrameResult:
    """One processed frame: ``index`` counts processed frames from 0 (the JSON ``frame``; per
    stream in a multi-stream run), ``frame.index`` is its number in the source (gaps there are
    dropped frames).

    ``stream`` / ``stream_index``: the stream's name and its position in the run's list of
    sources (``--source`` order, then ``--sources`` lines) in a multi-stream run; ``None`` / 0 in a
    single-source run, whose JSON records then have no ``stream`` field. Per-stream consumers
    (trackers, recorders, event sinks) key their state on ``stream_index``.

    ``tracks`` (with ``--track``): the tracker's view of this frame; ``detections`` are then its
    reported detections, each with its track id in the JSON record and in the drawn label.
    """

    index: int
    frame: Frame
    detections: Detections
    class_names: Sequence[str] | None = None
    status: list[str] = field(default_factory=list)
    stream: str | None = None
    stream_index: int = 0
    tracks: TrackUpdate | None = None
    _annotated: np.ndarray | None = field(default=None, repr=False)

    @property
    def annotated(self) -> np.ndarray:
        """The frame with boxes and labels drawn (drawn once, shared by the sinks)."""
        if self._annotated is None:
            ids = None if self.tracks is None else self.tracks.ids_list()
            self._annotated = draw_detections(self.frame.image, self.detections, self.class_names, track_ids=ids)
        return self._annotated

    def record(self) -> dict:
        f = self.frame
        h, w = f.image.shape[:2]
        head = {} if self.stream is None else {"stream": self.stream}
        dets = self.detections.to_list(self.class_names)
        if self.tracks is not None:
            for d, tid in zip(dets, self.tracks.ids_list()):
                d["track_id"] = tid
        return {
            **head,
            "frame": self.index,
            "source_frame": f.index,
            "timestamp": round(f.timestamp, 6),
            "pts": None if f.pts is None else round(f.pts, 6),
            "width": w,
            "height": h,
            "detections": dets,
        }


class Sink:
    """Base class. ``order``: sinks run in ascending order (the window, which draws the status
    text onto the shared annotated frame, runs last)."""

    order = 0
    stop_requested = False

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def tracks_ended(self, stream: str | None, stream_index: int, events: Sequence[TrackEvent],
                     class_names: Sequence[str] | None, reason: str = "stopped") -> None:
        """These tracks of a stream were alive when it ended (``reason`` "stream ended": its source
        ended or reached ``--max-frames``, after its last frame went through the sinks) or the run
        stopped (``"stopped"``), with ``--track``: their end events. Called at most once per stream,
        before :meth:`close`; most sinks ignore it."""

    def stats(self) -> dict[str, Any]:
        """Entries for the run summary (e.g. ``{"mqtt": {...}}``); final after :meth:`close`."""
        return {}


class JsonLinesSink(Sink):
    """One JSON record per frame (see :meth:`FrameResult.record`), flushed after every line.

    Written in place rather than renamed at the end, so another program can follow it live
    (``tail -f``); every line is complete once written. An existing file needs ``force``.
    """

    def __init__(self, path: str | os.PathLike[str], force: bool = False) -> None:
        self.path = check_writable(path, force)
        self._f: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.records = 0

    def write(self, result: FrameResult) -> None:
        if self._f is None:
            return
        try:
            self._f.write(json.dumps(result.record(), separators=(",", ":")) + "\n")
            self._f.flush()
        except OSError as err:  # a full disk: the lines so far are complete, the rest is lost
            self._abandon()
            raise output_error(self.path, err) from err
        self.records += 1

    def _abandon(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
                self._f.close()
            except OSError as err:
                self._abandon()
                raise output_error(self.path, err) from err
            self._f = None
            log.info("wrote %d JSON records to %s", self.records, self.path)


class VideoRecorder(Sink):
    """Records annotated frames with ``cv2.VideoWriter`` (``mp4v`` by default).

    Opened at the first frame (its size fixes the video size; later frames of another size are
    resized). Written to a hidden partial file beside ``path`` and renamed on :meth:`close`, so the
    path only ever holds a finished, playable video. ``cv2.VideoWriter.write`` reports nothing, so
    failures are looked for: the writer closing, the disk filling up (checked every
    ``CHECK_EVERY`` frames) and, at :meth:`close`, a file that does not open as a video of all the
    frames written. Each is an :class:`~detnet_trt.core.fileio.OutputError`; the partial file is
    removed and ``path`` is not written.
    """

    order = 10
    CHECK_EVERY = 30  # frames between checks of the writer and the free space
    MIN_FREE = 1 << 20  # bytes: less free space than this is a full disk

    def __init__(self, path: str | os.PathLike[str], fps: float = 30.0, force: bool = False, fourcc: str = "mp4v") -> None:
        self.path = check_writable(path, force)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial{self.path.suffix or '.mp4'}")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*self.fourcc), self.fps, (w, h))
        if not writer.isOpened():
            writer.release()
            raise DetnetError(
                f"cannot write video {self.path} with codec {self.fourcc!r} at {w}x{h}",
                "use a .mp4 path (mp4v) or an OpenCV built with FFmpeg",
            )
        self._writer, self._size = writer, (w, h)

    def write(self, result: FrameResult) -> None:
        img = result.annotated
        h, w = img.shape[:2]
        if self._writer is None:
            self._open(w, h)
        assert self._size is not None and self._writer is not None  # set by _open
        if (w, h) != self._size:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(img)
        self.frames += 1
        if (self.frames - 1) % self.CHECK_EVERY == 0:  # frames 1, 1 + CHECK_EVERY, ...
            self._check_writing()

    def _fail(self, why: str, fix: str) -> OutputError:
        """Drop the writer and the partial file; the error to raise."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.release()
            self._writer = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)
        return OutputError(f"recording {self.path} failed after {self.frames} frames: {why}; nothing was written", fix)

    def _check_writing(self) -> None:
        assert self._writer is not None
        if not self._writer.isOpened() or not self._tmp.exists():
            raise self._fail("the video writer stopped", "check the disk and the folder, then run again")
        try:
            free = shutil.disk_usage(self._tmp.parent).free
        except OSError as err:
            raise self._fail(f"cannot read the free space ({err.strerror or err})", "check the disk and the folder") from None
        if free < self.MIN_FREE:
            raise self._fail("no space left on the device", "free some space or record to another disk")

    def _verify(self) -> str | None:
        """Why the finished partial file is not a playable video of every frame written, or None."""
        if not self._tmp.is_file() or self._tmp.stat().st_size == 0:
            return "the video file is missing or empty (disk full or write error?)"
        cap = cv2.VideoCapture(str(self._tmp))
        try:
            if not cap.isOpened() or not cap.read()[0]:
                return "the video file does not play (disk full or write error?)"
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if 0 < count < self.frames:
                return f"the video file holds {count} of {self.frames} frames (disk full or write error?)"
        finally:
            cap.release()
        return None

    def close(self) -> None:
        if self._writer is None:
            if self.frames == 0:
                log.warning("no frames recorded; %s not written", self.path)
            return
        try:
            self._writer.release()
        except cv2.error as err:
            raise self._fail(f"the video writer failed at close ({err})", "check the disk, then run again") from None
        self._writer = None
        why = self._verify()
        if why is not None:
            raise self._fail(why, "free some space or record to another disk, then run again")
        try:
            os.replace(self._tmp, self.path)  # cv2 made it with fopen(): 0o666 & ~umask already
        except OSError as err:
            raise self._fail(f"cannot rename it into place ({err.strerror or err})", "check the folder, then run again") from None
        log.info("recorded %d frames to %s", self.frames, self.path)


def display_available() -> bool:
    """Whether a window can be shown: on Linux, DISPLAY or WAYLAND_DISPLAY must be set."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class WindowSink(Sink):
    """An OpenCV window with boxes, labels, FPS and per-stage timings; ``q`` or ``Esc`` stops."""

    order = 100

    def __init__(self, title: str = "detnet-trt") -> None:
        if not display_available():
            raise DetnetError("--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set",
                              "run with --headless (and --jsonl / --record), or forward X (ssh -X)")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as err:
            raise DetnetError(
                f"this OpenCV cannot open windows ({str(err).strip().splitlines()[-1]})",
                "install an OpenCV with GUI support (opencv-python, not -headless), or use --headless",
            ) from err
        self._shown = False

    def write(self, result: FrameResult) -> None:
        img = draw_text(result.annotated, result.status)
        cv2.imshow(self.title, img)
        self._shown = True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            log.info("window: key %r pressed, stopping", chr(key) if key != 27 else "Esc")
            self.stop_requested = True
        else:
            try:
                if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    log.info("window closed, stopping")
                    self.stop_requested = True
            except cv2.error:
                pass

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


def make_sinks(
    *,
    show: bool | None = None,
    jsonl: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    record_fps: float | None = None,
    force: bool = False,
    title: str = "detnet-trt",
) -> list[Sink]:
    """The sinks asked for: ``show=None`` opens a window when a display is available.

    Output paths are checked (no overwrite without ``force``) before anything is opened. On an
    error the sinks already made are closed again.
    """
    for p in (jsonl, record):
        if p is not None:
            check_writable(p, force)
    if jsonl is not None and record is not None and Path(jsonl).resolve() == Path(record).resolve():
        raise DetnetError(f"--jsonl and --record name the same file {jsonl}")
    sinks: list[Sink] = []
    try:
        if jsonl is not None:
            sinks.append(JsonLinesSink(jsonl, force))
        if record is not None:
            sinks.append(VideoRecorder(record, record_fps or 30.0, force))
        if show is None:
            show = display_available()
        if show:
            sinks.append(WindowSink(title))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sorted(sinks, key=lambda s: s.order)


# --------------------------------------------------------------------------------------------
# Several streams
# --------------------------------------------------------------------------------------------
def stream_output(path: str | os.PathLike[str], stream: str) -> Path:
    """The per-stream file of an output: ``out.mp4`` -> ``out.<stream>.mp4`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}.{stream}{p.suffix or '.mp4'}")


class PerStreamSink(Sink):
    """Hands each result to the sink of its stream (``sinks[result.stream_index]``), e.g. one
    :class:`VideoRecorder` per stream; ``close()`` closes them all, then raises the first error."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.order = min((s.order for s in self.sinks), default=0)

    def write(self, result: FrameResult) -> None:
        self.sinks[result.stream_index].write(result)

    def close(self) -> None:
        first: BaseException | None = None
        for s in self.sinks:
            try:
                s.close()
            except Exception as err:  # noqa: BLE001 - every recording is finished, the first error raised
                first = first or err
        if first is not None:
            raise first


class GridWindowSink(WindowSink):
    """One window with every stream as a tile (``ceil(sqrt(N))`` columns), each stream's newest
    annotated frame letterboxed into its tile under its name; redrawn at most ``max_rate`` times
    a second (a batch of N streams is one redraw, not N)."""

    def __init__(self, names: Sequence[str], title: str = "detnet-trt", tile: tuple[int, int] | None = None,
                 max_rate: float = 30.0) -> None:
        super().__init__(title)
        self.names = list(names)
        n = len(self.names)
        self.cols = max(1, int(np.ceil(np.sqrt(n))))
        self.rows = max(1, int(np.ceil(n / self.cols)))
        self.tile = tile or ((360, 640) if n <= 4 else (270, 480))  # (h, w)
        th, tw = self.tile
        self.canvas = np.zeros((self.rows * th, self.cols * tw, 3), np.uint8)
        self._min_dt = 1.0 / max_rate if max_rate > 0 else 0.0
        self._t_shown = -1e9
        self.redraws = 0

    def _place(self, result: FrameResult) -> None:
        th, tw = self.tile
        i = result.stream_index
        y, x = (i // self.cols) * th, (i % self.cols) * tw
        cell = self.canvas[y : y + th, x : x + tw]
        cell[...] = 0
        img = result.annotated
        h, w = img.shape[:2]
        scale = min(th / h, tw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        oy, ox = (th - nh) // 2, (tw - nw) // 2
        cell[oy : oy + nh, ox : ox + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        cell[...] = draw_text(cell, [self.names[i] if i < len(self.names) else str(i)])

    def write(self, result: FrameResult) -> None:
        import time

        self._place(result)
        now = time.perf_counter()
        if now - self._t_shown < self._min_dt:
            return
        self._t_shown = now
        self.redraws += 1
        super().write(FrameResult(result.index, result.frame, result.detections, result.class_names, result.status,
                                  result.stream, result.stream_index, _annotated=self.canvas.copy()))


def make_stream_sinks(  # reason: the sink flags of CameraOptions plus the streams' names and rates
    names: Sequence[str],
    *,
    show: bool | None = None,
    jsonl: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
    record_fps: Sequence[float | None] = (),
    force: bool = False,
    title: str = "detnet-trt",
) -> list[Sink]:
    """The sinks of a multi-stream run: one JSON lines file (records with a ``stream`` field),
    one recording per stream (:func:`stream_output` of ``record``, at that stream's
    ``record_fps``), one window of tiles. Every output path is checked before anything opens."""
    recs = [stream_output(record, n) for n in names] if record is not None else []
    paths = [Path(p) for p in ([jsonl] if jsonl is not None else []) + recs]
    for p in paths:
        check_writable(p, force)
    if len({p.resolve() for p in paths}) != len(paths):
        raise DetnetError(f"the outputs {[str(p) for p in paths]} are not all different files",
                          "give --jsonl and --record different names")
    sinks: list[Sink] = []
    try:
        if jsonl is not None:
            sinks.append(JsonLinesSink(jsonl, force))
        if recs:
            fps = list(record_fps) + [None] * len(recs)
            sinks.append(PerStreamSink([VideoRecorder(p, fps[i] or 30.0, force) for i, p in enumerate(recs)]))
        if show is None:
            show = display_available()
        if show:
            sinks.append(GridWindowSink(names, title))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sorted(sinks, key=lambda s: s.order)
