"""The camera loop: capture -> letterbox into the reused input buffer -> infer -> NMS -> sinks.

With ``overlap`` on (the default) three things run at once: a pre-processing thread waits for
the next frame and letterboxes it into the idle one of two input buffers (the TensorRT engine's
two page-locked host inputs where the backend lends them, so no frame is copied again on the
host: :func:`slot_letterboxers`), an inference thread runs the
backend on the current one, and the calling thread does the NMS and the sinks of the frame
before (so GUI windows stay on the thread that made them; the TensorRT backend pushes its CUDA
context around each call, so it runs from the inference thread). At most one frame is prepared
ahead and one is in inference, so a live frame is never older than one inference when its
inference starts; ``overlap=False`` runs everything in turn on the calling thread: the lowest
latency at a lower frame rate.

:func:`run_loop` runs a loop over an opened source, detector and sinks; :func:`run_camera` is
what ``detnet-trt camera`` calls: it opens everything from paths and ``--source`` text, stops
cleanly on Ctrl-C / SIGTERM / ``--duration`` / ``--max-frames`` / the end of a file, closes
every sink (finished video, flushed JSON lines) and returns the summary. Both take a
:class:`~.options.CameraOptions`; :func:`run_camera` also the
:class:`~detnet_trt.core.config.PostprocessConfig` of the detector it makes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..._version import __version__
from ...core.config import PostprocessConfig
from ...core.errors import DetnetError, InputError
from ...core.fileio import atomic_write_text, check_writable
from ...runtime.backends.base import Backend
from ...runtime.detector import Detector
from ...runtime.letterbox import Letterboxer, LetterboxInfo
from .mqtt_sink import MqttSink, import_paho
from .options import CameraOptions
from .sinks import FrameResult, Sink, display_available, make_sinks
from .sources import Frame, FrameSource, StopLike, open_source
from .timing import LoopTimer
from .tracking import StreamTrackers

log = logging.getLogger("detnet_trt.camera")

_POLL = 0.05  # seconds between checks of the stop flag while waiting


class StopFlag:
    """A stop request with its reason (``SIGINT``, ``duration``, ``window``, ...); first reason wins."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self._lock = threading.Lock()

    def set(self, reason: str = "stopped") -> None:
        with self._lock:
            if not self.event.is_set():
                self.reason = reason
                self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into ``flag.set(name)`` (the loop then stops cleanly); a
    second one raises ``KeyboardInterrupt`` (sinks are still closed by ``finally``). Only in the
    main thread (Python delivers signals there); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if flag.is_set():
            raise KeyboardInterrupt(name)
        log.warning("%s received: stopping (send it again to abort)", name)
        flag.set(name)

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class _Prepared:
    frame: Frame
    slot: int
    batch: np.ndarray
    infos: list[LetterboxInfo]
    capture_s: float
    pre_s: float


class _End:
    pass


@dataclass
class _Failed:
    error: BaseException


class _Either:
    """Set when either event is set (``StopLike`` for ``FrameSource.read``)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()


_Item = TypeVar("_Item")


def _take(q: queue.Queue[_Item | _End | _Failed], flag: StopFlag) -> _Item | None:
    """The next item a worker thread handed over; None at the worker's end or once ``flag`` is
    set; the worker's exception is re-raised here, on the consumer's thread."""
    while True:
        try:
            item = q.get(timeout=_POLL)
        except queue.Empty:
            if flag.is_set():
                return None
            continue
        if isinstance(item, _Failed):
            raise item.error
        return None if isinstance(item, _End) else item


def _prepare(source: FrameSource, lb: Letterboxer, slot: int, halt: StopLike) -> _Prepared | None:
    t0 = time.perf_counter()
    frame = source.read(halt)
    t1 = time.perf_counter()
    if frame is None:
        return None
    batch, infos = lb.fill([frame.image])
    return _Prepared(frame, slot, batch, infos, t1 - t0, time.perf_counter() - t1)


class _Prefetcher:
    """The pre-processing thread: a free input buffer -> wait for a frame -> letterbox into it.

    ``prepare(letterboxer, slot, halt)`` replaces the one-frame :func:`_prepare` (the
    multi-stream loop gathers a batch there); what it returns needs a ``slot``; ``None`` ends.
    """

    def __init__(self, source: FrameSource | None, letterboxers: list[Letterboxer], flag: StopFlag,
                 prepare: Callable[[Letterboxer, int, StopLike], Any] | None = None) -> None:
        self.source, self.letterboxers, self.flag = source, letterboxers, flag
        self._prepare_fn = prepare
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(len(letterboxers)):
            self.free.put(i)
        self.ready: queue.Queue[_Prepared | _End | _Failed] = queue.Queue()
        self.halt = threading.Event()  # set by the consumer when it is done
        self.thread = threading.Thread(target=self._run, name="camera-pre", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not (self.halt.is_set() or self.flag.is_set()):
                try:
                    slot = self.free.get(timeout=_POLL)
                except queue.Empty:
                    continue
                halt, lb = _Either(self.halt, self.flag.event), self.letterboxers[slot]
                if self._prepare_fn is not None:
                    item = self._prepare_fn(lb, slot, halt)
                else:
                    assert self.source is not None  # one of the two is given
                    item = _prepare(self.source, lb, slot, halt)
                if item is None:
                    break
                self.ready.put(item)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            self.ready.put(_Failed(err))
            return
        self.ready.put(_End())

    def get(self) -> Any:
        return _take(self.ready, self.flag)

    def release(self, slot: int) -> None:
        self.free.put(slot)

    def close(self) -> None:
        self.halt.set()
        self.thread.join(timeout=5.0)


@dataclass
class _Inferred:
    item: _Prepared
    outputs: dict[str, np.ndarray]
    infer_s: float
    stall_s: float  # the backend waiting for this frame to be prepared


class _Inferrer:
    """The inference thread: a prepared frame -> ``backend.infer`` -> its slot freed -> results.

    At most one result waits for the calling thread (a full queue holds inference back, so a
    slow sink makes live frames drop at the source instead of queueing); it stops after ``limit``
    frames, at the end of the source, or when ``flag`` is set. ``infer(item)`` replaces
    ``backend.infer(item.batch)`` (the multi-stream loop splits a batch there).
    """

    def __init__(self, backend: Backend, prefetch: _Prefetcher, flag: StopFlag, limit: int | None,
                 infer: Callable[[Any], dict[str, np.ndarray]] | None = None) -> None:
        self.backend, self.prefetch, self.flag, self.limit = backend, prefetch, flag, limit
        self._infer_fn = infer
        self.results: queue.Queue[_Inferred | _End | _Failed] = queue.Queue(maxsize=1)
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="camera-infer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        started = 0
        try:
            while not (self.halt.is_set() or self.flag.is_set()):
                if self.limit is not None and started >= self.limit:
                    break
                t0 = time.perf_counter()
                item = self.prefetch.get()
                t1 = time.perf_counter()
                if item is None:
                    break
                started += 1
                outputs = self._infer_fn(item) if self._infer_fn is not None else self.backend.infer(item.batch)
                t2 = time.perf_counter()
                self.prefetch.release(item.slot)  # the backend has consumed the input buffer
                self._put(_Inferred(item, outputs, t2 - t1, t1 - t0))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(_Failed(err))
            return
        self._put(_End())

    def _put(self, item: _Inferred | _End | _Failed) -> None:
        while not self.halt.is_set():
            try:
                self.results.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def get(self) -> _Inferred | None:
        return _take(self.results, self.flag)

    def close(self) -> None:
        self.halt.set()
        self.thread.join(timeout=5.0)


def _start_workers(
    detector: Detector, source: FrameSource, flag: StopFlag, options: CameraOptions
) -> tuple[_Prefetcher | None, _Inferrer | None]:
    """With ``overlap``: the pre-processing thread (two input buffers) and the inference thread."""
    if not options.overlap:
        return None, None
    prefetch = _Prefetcher(source, slot_letterboxers(detector, detector.letterboxer.max_batch), flag)
    return prefetch, _Inferrer(detector.backend, prefetch, flag, options.max_frames)


def slot_letterboxers(detector: Detector, batch: int) -> list[Letterboxer]:
    """The two letterboxers of a pipelined run, each filling its own input buffer of ``batch`` images:
    the backend's two page-locked host input slots where it lends them
    (:meth:`Backend.host_input_slots`: the TensorRT engine, so ``infer()`` copies nothing on the
    host), else buffers of their own (also for a batch the backend takes in more than one call)."""
    lb = detector.letterboxer
    try:
        slots = detector.backend.host_input_slots(batch)
    except InputError:  # outside the engine's batch range: infer_batch splits it, from our own buffers
        slots = None
    return [Letterboxer(lb.input_size, lb.layout, batch, pad_value=lb.pad_value,
                        buffer=None if slots is None else slots[i]) for i in range(2)]


def _stop_workers(prefetch: _Prefetcher | None, inferrer: _Inferrer | None) -> None:
    if inferrer is not None:
        inferrer.halt.set()
    if prefetch is not None:
        prefetch.close()  # ends the pre-processing thread, which ends a waiting inferrer
    if inferrer is not None:
        inferrer.close()


def _next_inferred(detector: Detector, source: FrameSource, flag: StopFlag, inferrer: _Inferrer | None) -> _Inferred | None:
    """The next inferred frame: from the inference thread, or (no overlap) captured, letterboxed
    and inferred here; None at the end of the source or on a stop."""
    if inferrer is not None:
        return inferrer.get()
    t0 = time.perf_counter()
    item = _prepare(source, detector.letterboxer, 0, flag.event)
    t1 = time.perf_counter()
    if item is None:
        return None
    outputs = detector.backend.infer(item.batch)
    return _Inferred(item, outputs, time.perf_counter() - t1, t1 - t0)


def _finish_frame(detector: Detector, got: _Inferred, n: int, sinks: Sequence[Sink], timer: LoopTimer,
                  trackers: StreamTrackers | None = None) -> float:
    """NMS (and tracking) and the sinks of frame ``n``, its stage times recorded; returns when it was done."""
    item = got.item
    t2 = time.perf_counter()
    dets = detector.postprocess(got.outputs, item.infos)[0]
    tracks = trackers.update(0, dets) if trackers is not None else None
    t3 = time.perf_counter()
    result = FrameResult(n, item.frame, dets if tracks is None else tracks.detections, detector.class_names,
                         timer.status_lines() if sinks else [], tracks=tracks)
    for s in sinks:
        s.write(result)
    t4 = time.perf_counter()
    for name, secs in (("capture", item.capture_s), ("pre", item.pre_s), ("infer", got.infer_s),
                       ("post", t3 - t2), ("sinks", t4 - t3), ("latency", t4 - item.frame.t_capture),
                       ("stall", got.stall_s)):
        timer.add(name, secs)
    timer.frame_done(t4)
    return t4


def run_loop(
    detector: Detector,
    source: FrameSource,
    sinks: Sequence[Sink] = (),
    options: CameraOptions = CameraOptions(),
    *,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Run detection on ``source`` until it ends, ``options.max_frames`` frames were processed,
    ``options.duration`` seconds passed, or ``stop`` is set; ``options.overlap`` and
    ``options.log_interval`` say how it runs (its sink and source fields are not used here).
    Returns the summary (see :meth:`LoopTimer.summary`, plus source counters, ``stop_reason`` and
    ``overlap``).

    Opens the detector's backend if needed; does not close the source or the sinks.
    """
    flag = stop or StopFlag()
    detector.backend.open()
    trackers = None if options.track is None else StreamTrackers(options.track, detector.post.conf)
    timer = LoopTimer()
    sinks = sorted(sinks, key=lambda s: s.order)
    prefetch, inferrer = _start_workers(detector, source, flag, options)
    duration, log_interval, max_frames = options.duration, options.log_interval, options.max_frames
    timer_thread = threading.Timer(duration, flag.set, args=("duration",)) if duration else None
    t_start = time.perf_counter()
    timer.start(t_start)
    if timer_thread is not None:
        timer_thread.daemon = True
        timer_thread.start()
    next_log = t_start + log_interval if log_interval else None
    end_reason = "end of stream"
    n = 0
    try:
        while not flag.is_set():
            if max_frames is not None and n >= max_frames:
                end_reason = "max-frames"
                break
            got = _next_inferred(detector, source, flag, inferrer)
            if got is None:
                break
            t_done = _finish_frame(detector, got, n, sinks, timer, trackers)
            n += 1
            if any(s.stop_requested for s in sinks):
                flag.set("window")
            if next_log is not None and t_done >= next_log:
                next_log = t_done + (log_interval or 0)
                log.info("%d frames | %s | %s | dropped %d, reconnects %d", n, *timer.status_lines(),
                         source.dropped, source.reconnects)
    finally:
        timer.stop(time.perf_counter())  # the wall time includes waiting for a reconnecting source
        if timer_thread is not None:
            timer_thread.cancel()
        _stop_workers(prefetch, inferrer)
    summary: dict[str, Any] = timer.summary()
    summary.update(source.stats())
    summary["stop_reason"] = flag.reason if flag.is_set() else end_reason
    summary["overlap"] = options.overlap
    if trackers is not None:
        summary["tracking"] = trackers.stats()
        end_tracks(trackers, sinks, [None], detector.class_names,
                   reason="stopped" if flag.is_set() else "stream ended")
    return summary


def end_tracks(trackers: StreamTrackers, sinks: Sequence[Sink], names: Sequence[str | None],
               class_names: Sequence[str] | None, streams: Sequence[int] | None = None, reason: str = "stopped") -> None:
    """The tracks of ``streams`` end (``None``: of every stream, the run ended), and the sinks hear
    of it (``Sink.tracks_ended``, with ``reason``)."""
    for i, events in trackers.finish(streams).items():
        if events:
            for s in sinks:
                s.tracks_ended(names[i] if i < len(names) else None, i, events, class_names, reason=reason)


def _describe_backend(backend: Backend) -> dict[str, Any]:
    try:
        d: dict[str, Any] = dict(backend.describe())
    except Exception:  # noqa: BLE001 - a description is informative only
        d = {"backend": backend.name}
    d["model"] = backend.meta.model
    d["input_size"] = list(backend.meta.input_size)
    return d


def _check_outputs(options: CameraOptions) -> None:
    """Before the (possibly slow) model load: outputs writable, a display for ``--show``."""
    for p in options.outputs():
        check_writable(p, options.force)
    if options.mqtt is not None:
        import_paho()  # a missing paho-mqtt said before the model loads
    if options.show and not display_available():
        raise DetnetError("--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set",
                          "run with --headless (and --jsonl / --record), or forward X (ssh -X)")


def _open_backend(model: str | os.PathLike[str] | Backend, backend_kwargs: dict[str, Any] | None) -> tuple[Backend, str]:
    if isinstance(model, Backend):
        return model, f"<{type(model).__name__}>"
    from ...runtime.backends import load_backend

    return load_backend(model, **(backend_kwargs or {})), str(model)


def _warm_up(detector: Detector, runs: int) -> None:
    """First runs allocate / autotune: keep them out of the figures."""
    detector.letterboxer.buffer.fill(detector.letterboxer.pad_value)
    for _ in range(max(0, runs)):
        detector.backend.infer(detector.letterboxer.buffer[:1])


def _open_source_and_sinks(
    stack: contextlib.ExitStack, source: str | int | FrameSource, options: CameraOptions
) -> tuple[FrameSource, list[Sink]]:
    """The source (the caller's own ``FrameSource`` is left open) and the sinks, closed by ``stack``."""
    if isinstance(source, FrameSource):
        src = source  # the caller's: the caller closes it
    else:
        src = open_source(source, reconnect=options.reconnect, width=options.width, height=options.height,
                          fps=options.fps)
        stack.callback(src.close)
    log.info("source %s opened (%s%s)", src.name, "live" if src.live else "every frame",
             f", {src.fps:g} FPS" if src.fps else "")
    sinks = make_sinks(show=options.show, jsonl=options.jsonl, record=options.record,
                       record_fps=options.record_fps or src.fps, force=options.force, title=f"detnet-trt: {src.name}")
    for s in sinks:
        stack.callback(s.close)
    if options.mqtt is not None:
        sinks.append(MqttSink(options.mqtt))
        stack.callback(sinks[-1].close)
    return src, sorted(sinks, key=lambda s: s.order)


def run_camera(
    model: str | os.PathLike[str] | Backend,
    source: str | int | FrameSource,
    options: CameraOptions = CameraOptions(),
    post: PostprocessConfig = PostprocessConfig(),
    *,
    handle_signals: bool = True,
    stop: StopFlag | None = None,
    warmup: int = 1,
    backend_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``detnet-trt camera``: detect on a camera, stream, video file or image folder.

    ``model`` is a checkpoint / ONNX / engine path (see :func:`detnet_trt.load_backend`) or a
    :class:`Backend`; ``backend_kwargs`` go to :func:`~detnet_trt.load_backend`. ``options``: sinks,
    limits, source and loop settings (:class:`CameraOptions`); ``post``: the detector's
    thresholds. ``warmup`` inferences run before the loop. Returns the summary dict (also written
    to ``options.stats_json``).
    """
    _check_outputs(options)
    det_post = post
    if options.track is not None:  # --conf starts tracks; the detector keeps the low scores too
        track, det_post = options.track.resolve(post)
        options = dataclasses.replace(options, track=track)
    backend, model_name = _open_backend(model, backend_kwargs)
    flag = stop or StopFlag()
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_on_signals(flag) if handle_signals else contextlib.nullcontext())
        stack.enter_context(backend)
        detector = Detector(backend, det_post)
        _warm_up(detector, warmup)
        src, sinks = _open_source_and_sinks(stack, source, options)
        summary = run_loop(detector, src, sinks, options, stop=flag)
    summary.update({k: v for s in sinks for k, v in s.stats().items()})  # after close: final counts
    # sinks and source are closed here (also on errors and Ctrl-C): record the run
    jsonl, record = options.jsonl, options.record
    outputs = {"jsonl": str(jsonl) if jsonl else None, "record": str(record) if record else None}
    _write_summary(summary, options, model_name, _describe_backend(backend), post, outputs)
    return summary


def _write_summary(  # reason: the summary and the five things a run record adds to it
    summary: dict[str, Any], options: CameraOptions, model_name: str, backend: dict[str, Any],
    post: PostprocessConfig, outputs: dict[str, Any],
) -> None:
    """Add what ran (model, backend, thresholds, outputs, versions) and write ``options.stats_json``."""
    summary.update(
        {
            "model": model_name,
            "backend": backend,
            "conf": post.conf,
            "iou": post.iou,
            "outputs": outputs,
            "detnet_trt": __version__,
            "python": platform.python_version(),
            "host": platform.node(),
        }
    )
    if options.stats_json is not None:
        import json

        atomic_write_text(options.stats_json, json.dumps(summary, indent=2) + "\n", force=True)


__all__ = ["CameraOptions", "StopFlag", "run_camera", "run_loop", "stop_on_signals"]
