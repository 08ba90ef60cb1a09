"""Many cameras, one engine: ``detnet-trt camera`` with several ``--source`` / a ``--sources`` file.

Each source captures on its own thread (live sources keep only their newest frame and reconnect
with their own backoff; files and folders are decoded one frame ahead, every frame in order); a
:class:`~.batcher.Batcher` gathers one frame per running stream into one batch (at most
``batch_timeout_ms`` after its first frame), letterboxed in place into a batch input buffer, run
through the backend in as few calls as its maximum batch allows, and each frame's detections go
back to its stream, in order, through the sinks (one JSON lines file with a ``stream`` field, one
recording per stream, one window of tiles).

With ``overlap`` (the default) the same three-stage pipeline as the single-source loop runs: a
thread gathers and letterboxes the next batch into the idle one of two buffers (the TensorRT
engine's page-locked input slots where it lends them: no host copy), a thread runs the backend on
the current one, the calling thread does the NMS and the sinks of the batch before. One stream
ending or failing never stops the others; the run ends when every stream has ended (or reached
``max_frames``, which counts per stream), at ``duration``, or on a stop.

``--sources FILE``: one source per line, ``URI`` or ``NAME=URI`` (``NAME`` of letters, digits,
``_ . -``); blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.config import PostprocessConfig
from ...core.errors import DetnetError, InputError
from ...core.fileio import check_writable
from ...runtime.backends.base import Backend
from ...runtime.detector import Detector
from ...runtime.letterbox import Letterboxer, LetterboxInfo
from .batcher import Batcher, infer_batch
from .loop import (
    StopFlag,
    _Inferred,
    _Inferrer,
    _Prefetcher,
    _stop_workers,
    end_tracks,
    slot_letterboxers,
    stop_on_signals,
)
from .mqtt_sink import MqttSink, import_paho
from .options import CameraOptions
from .sinks import FrameResult, Sink, display_available, make_stream_sinks, stream_output
from .sources import Frame, FrameSource, SourceSpec, StopLike, open_source, parse_source
from .timing import MultiTimer
from .tracking import StreamTrackers

log = logging.getLogger("detnet_trt.camera")

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


# --------------------------------------------------------------------------------------------
# Streams: names and the --sources file
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamSpec:
    """One stream of a run: its ``name`` (JSON ``stream`` field, recording file, window tile)
    and its parsed source."""

    name: str
    source: SourceSpec


def read_sources_file(path: str | os.PathLike[str]) -> list[tuple[str | None, str]]:
    """The ``(name or None, source text)`` lines of a ``--sources`` file (see the module
    docstring); raises :class:`InputError` naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"--sources file {p} does not exist", "give a text file with one source per line") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read --sources file {p} ({getattr(err, 'strerror', None) or err})",
                         "give a UTF-8 text file with one source per line") from None
    out: list[tuple[str | None, str]] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(rf"({NAME_PATTERN})\s*=\s*(.*)$", line)
        name, src = (m.group(1), m.group(2).strip()) if m else (None, line)
        if not src:
            raise InputError(f"{p}:{no}: no source after {name}=", "write NAME=URI or just URI")
        try:
            parse_source(src)
        except DetnetError as err:
            raise InputError(f"{p}:{no}: {err.message}", err.hint) from None
        out.append((name, src))
    if not out:
        raise InputError(f"--sources file {p} lists no source", "write one URI (or NAME=URI) per line")
    return out


def stream_specs(sources: Sequence[str | tuple[str | None, str]]) -> list[StreamSpec]:
    """Parse every source (its errors name it) and name the streams: a given name must be unique
    and of ``[A-Za-z0-9_.-]``; the others get :meth:`SourceSpec.default_name`, made unique
    with ``-2``, ``-3``, ..."""
    pairs = [(None, s) if isinstance(s, str) else s for s in sources]
    parsed = [(name, parse_source(text)) for name, text in pairs]
    given = [n for n, _ in parsed if n is not None]
    for n in given:
        if not re.fullmatch(NAME_PATTERN, n):
            raise InputError(f"stream name {n!r} is not 1-64 letters, digits, '_', '.' or '-'")
    dup = sorted({n for n in given if given.count(n) > 1})
    if dup:
        raise InputError(f"stream names {dup} are given more than once", "give every stream its own name")
    taken, out = set(given), []
    for name, spec in parsed:
        if name is None:
            base = spec.default_name()
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}-{k}"
            taken.add(name)
        out.append(StreamSpec(name, spec))
    return out


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    frames: list[tuple[int, Frame]]  # (stream index, frame), in stream order
    slot: int
    batch: np.ndarray
    infos: list[LetterboxInfo]
    gather_s: float
    pre_s: float
    calls: int = 0
    finished: list[int] = dataclasses.field(default_factory=list)  # streams with no frame after this batch


def _gather(batcher: Batcher, lb: Letterboxer, slot: int, halt: StopLike) -> _Batch | None:
    """Wait for a batch of frames and letterbox them into ``lb``'s buffer, in place."""
    t0 = time.perf_counter()
    got = batcher.gather(halt)
    t1 = time.perf_counter()
    if got is None:
        return None
    finished = batcher.newly_finished()
    batch, infos = lb.fill([f.image for _, f in got])
    return _Batch(got, slot, batch, infos, t1 - t0, time.perf_counter() - t1, finished=finished)


def _infer(backend: Backend, item: _Batch) -> dict[str, np.ndarray]:
    outputs, item.calls = infer_batch(backend, item.batch)
    return outputs


class _Pipeline:
    """The batches of a run: gathered, letterboxed and inferred on two threads (``overlap``), or
    in turn on the calling thread."""

    def __init__(self, detector: Detector, batcher: Batcher, flag: StopFlag, overlap: bool) -> None:
        self.detector, self.batcher, self.flag = detector, batcher, flag
        lb, n = detector.letterboxer, len(batcher.sources)
        self.lbs = (slot_letterboxers(detector, n) if overlap
                    else [Letterboxer(lb.input_size, lb.layout, n, pad_value=lb.pad_value)])
        self.prefetch: _Prefetcher | None = None
        self.inferrer: _Inferrer | None = None
        if overlap:
            self.prefetch = _Prefetcher(None, self.lbs, flag, lambda lb_, slot, halt: _gather(batcher, lb_, slot, halt))
            self.inferrer = _Inferrer(detector.backend, self.prefetch, flag, None,
                                      lambda item: _infer(detector.backend, item))

    def next(self) -> _Inferred | None:
        if self.inferrer is not None:
            return self.inferrer.get()
        t0 = time.perf_counter()
        item = _gather(self.batcher, self.lbs[0], 0, self.flag.event)
        t1 = time.perf_counter()
        if item is None:
            return None
        outputs = _infer(self.detector.backend, item)
        return _Inferred(item, outputs, time.perf_counter() - t1, t1 - t0)  # type: ignore[arg-type]

    def close(self) -> None:
        _stop_workers(self.prefetch, self.inferrer)


def _finish_batch(detector: Detector, got: _Inferred, names: Sequence[str], sinks: Sequence[Sink],
                  timer: MultiTimer, trackers: StreamTrackers | None = None) -> float:
    """NMS (and tracking) of the batch, then each frame through the sinks as a result of its stream;
    returns when done."""
    item: _Batch = got.item  # type: ignore[assignment]
    t2 = time.perf_counter()
    dets = detector.postprocess(got.outputs, item.infos)
    tracks = None
    if trackers is not None:  # the whole batch in one step
        tracks = trackers.update_many([(i, d) for (i, _), d in zip(item.frames, dets)])
    t3 = time.perf_counter()
    status = timer.status_lines() if sinks else []
    t_done = t3
    for k, ((i, frame), d) in enumerate(zip(item.frames, dets)):
        t_in = time.perf_counter()
        tr = tracks[k] if tracks is not None else None
        result = FrameResult(timer.streams[i].frames, frame, d if tr is None else tr.detections, detector.class_names,
                             status, names[i], i, tracks=tr)
        for s in sinks:
            s.write(result)
        t_done = time.perf_counter()
        timer.add("sinks", t_done - t_in)
        timer.frame_done(i, t_done, t_done - frame.t_capture)
    for name, secs in (("gather", item.gather_s), ("pre", item.pre_s), ("infer", got.infer_s),
                       ("post", t3 - t2), ("stall", got.stall_s)):
        timer.add(name, secs)
    timer.batch_done(len(item.frames), item.calls, t_done)
    return t_done


def _log_progress(timer: MultiTimer, names: Sequence[str], sources: Sequence[FrameSource]) -> None:
    log.info("%d frames, %.1f FPS, %d batches %s | %s", timer.frames, timer.fps_of(timer.frames), timer.batches,
             dict(sorted(timer.batch_sizes.items())), timer.status_lines()[1])
    for name, st, src in zip(names, timer.streams, sources):
        lat = st.latency.summary()
        log.info("  %s: %d frames, %.1f FPS, dropped %d, reconnects %d, latency p50 %.0f / p99 %.0f ms%s",
                 name, st.frames, timer.fps_of(st.frames), src.dropped, src.reconnects, lat["p50_ms"], lat["p99_ms"],
                 "" if src.connected or src.ended else " (reconnecting)")


def _stream_summaries(summary: dict[str, Any], names: Sequence[str], sources: Sequence[FrameSource]) -> None:
    for i, (st, name, src) in enumerate(zip(summary["streams"], names, sources)):
        counters = src.stats()
        counters.pop("live", None)
        st.update({"stream": name, "index": i, **counters, "live": src.live, "ended": src.ended,
                   "error": getattr(src, "error", None)})
    summary["dropped"] = sum(src.dropped for src in sources)
    summary["reconnects"] = sum(src.reconnects for src in sources)
    summary["source"] = f"{len(sources)} streams"


def run_multi_loop(
    detector: Detector,
    sources: Sequence[FrameSource],
    names: Sequence[str],
    sinks: Sequence[Sink] = (),
    options: CameraOptions = CameraOptions(),
    *,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Run detection on several threaded sources (``open_source(..., threaded=True)``) named
    ``names`` until every stream has ended or reached ``options.max_frames``, ``options.duration``
    passed, or ``stop`` is set. Returns the summary (:meth:`MultiTimer.summary`, each stream with
    its source counters, ``stop_reason``, ``overlap``, ``batch_timeout_ms``, ``max_batch``).

    Opens the detector's backend if needed; does not close the sources or the sinks.
    """
    if len(names) != len(sources) or not sources:
        raise InputError(f"got {len(sources)} sources and {len(names)} names", "give one name per source")
    flag = stop or StopFlag()
    detector.backend.open()
    batcher = Batcher(sources, options.batch_timeout_ms / 1e3, options.max_frames)
    trackers = None if options.track is None else StreamTrackers(options.track, detector.post.conf, len(sources))
    timer = MultiTimer(len(sources))
    sinks = sorted(sinks, key=lambda s: s.order)
    duration, log_interval = options.duration, options.log_interval
    timer_thread = threading.Timer(duration, flag.set, args=("duration",)) if duration else None
    t_start = time.perf_counter()
    timer.start(t_start)
    pipe = _Pipeline(detector, batcher, flag, options.overlap)
    if timer_thread is not None:
        timer_thread.daemon = True
        timer_thread.start()
    next_log = t_start + log_interval if log_interval else None
    try:
        while not flag.is_set():
            got = pipe.next()
            if got is None:
                break
            t_done = _finish_batch(detector, got, names, sinks, timer, trackers)
            done = got.item.finished  # type: ignore[attr-defined]
            if trackers is not None and done:  # those streams' last frames are through: their tracks end now
                end_tracks(trackers, sinks, names, detector.class_names, done, reason="stream ended")
            if any(s.stop_requested for s in sinks):
                flag.set("window")
            if next_log is not None and t_done >= next_log:
                next_log = t_done + (log_interval or 0)
                _log_progress(timer, names, sources)
    finally:
        timer.stop(time.perf_counter())
        if timer_thread is not None:
            timer_thread.cancel()
        pipe.close()
    summary = timer.summary()
    _stream_summaries(summary, names, sources)
    at_max = options.max_frames is not None and any(t >= options.max_frames for t in batcher.taken)
    summary["stop_reason"] = flag.reason if flag.is_set() else ("max-frames" if at_max else "end of streams")
    summary.update({"overlap": options.overlap, "batch_timeout_ms": options.batch_timeout_ms,
                    "max_batch": detector.backend.max_batch, "batcher_host_ms": round(1e3 * batcher.host_s, 3)})
    if trackers is not None:
        summary["tracking"] = {names[int(k)]: v for k, v in trackers.stats().items()}
        if not flag.is_set():  # the last streams ended after the last batch
            end_tracks(trackers, sinks, names, detector.class_names, batcher.newly_finished(), reason="stream ended")
        end_tracks(trackers, sinks, names, detector.class_names)
    return summary


# --------------------------------------------------------------------------------------------
# detnet-trt camera with several sources
# --------------------------------------------------------------------------------------------
def _check_outputs(streams: Sequence[StreamSpec], options: CameraOptions) -> None:
    """Before the model load: every output (each stream's recording too) writable, none an input."""
    inputs = [s.source.target for s in streams if s.source.kind in ("file", "folder")]
    paths = [Path(p) for p in options.outputs()]
    if options.record is not None:
        paths += [stream_output(options.record, s.name) for s in streams]
    for p in paths:
        check_writable(p, options.force, inputs)
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError(f"the outputs {[str(p) for p in paths]} are not all different files",
                         "give --jsonl, --record and --stats-json different names")
    if options.show and not display_available():
        raise InputError("--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set",
                         "run with --headless (and --jsonl / --record), or forward X (ssh -X)")


def _open_streams(stack: contextlib.ExitStack, streams: Sequence[StreamSpec], options: CameraOptions) -> list[FrameSource]:
    sources = []
    for s in streams:
        src = open_source(s.source, reconnect=options.reconnect, width=options.width, height=options.height,
                          fps=options.fps, threaded=True)
        stack.callback(src.close)
        log.info("stream %s: %s opened (%s%s)", s.name, src.name, "live" if src.live else "every frame",
                 f", {src.fps:g} FPS" if src.fps else "")
        sources.append(src)
    return sources


def run_multi_camera(  # reason: run_camera's signature, with several sources
    model: str | os.PathLike[str] | Backend,
    sources: Sequence[str | tuple[str | None, str]],
    options: CameraOptions = CameraOptions(),
    post: PostprocessConfig = PostprocessConfig(),
    *,
    handle_signals: bool = True,
    stop: StopFlag | None = None,
    warmup: int = 1,
    backend_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``detnet-trt camera`` with several sources (``--source`` texts or ``(name, text)`` pairs,
    e.g. from :func:`read_sources_file`): as :func:`~.loop.run_camera`, batched across streams.

    Every source is parsed and every output checked before the model is loaded. Returns the
    summary (see :func:`run_multi_loop`; also written to ``options.stats_json``).
    """
    from .loop import _describe_backend, _open_backend, _warm_up, _write_summary

    streams = stream_specs(sources)
    _check_outputs(streams, options)
    det_post = post
    if options.track is not None:  # --conf starts tracks; the detector keeps the low scores too
        track, det_post = options.track.resolve(post)
        options = dataclasses.replace(options, track=track)
    if options.mqtt is not None:
        import_paho()
    backend, model_name = _open_backend(model, backend_kwargs)
    flag = stop or StopFlag()
    names = [s.name for s in streams]
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_on_signals(flag) if handle_signals else contextlib.nullcontext())
        stack.enter_context(backend)
        detector = Detector(backend, det_post)
        _warm_up(detector, warmup)
        srcs = _open_streams(stack, streams, options)
        sinks = make_stream_sinks(names, show=options.show, jsonl=options.jsonl, record=options.record,
                                  record_fps=[options.record_fps or s.fps for s in srcs], force=options.force,
                                  title=f"detnet-trt: {len(names)} streams")
        for s in sinks:
            stack.callback(s.close)
        if options.mqtt is not None:
            sinks.append(MqttSink(options.mqtt))
            stack.callback(sinks[-1].close)
        summary = run_multi_loop(detector, srcs, names, sinks, options, stop=flag)
    summary.update({k: v for s in sinks for k, v in s.stats().items()})  # after close: final counts
    outputs = {"jsonl": str(options.jsonl) if options.jsonl else None,
               "record": [str(stream_output(options.record, n)) for n in names] if options.record else None}
    _write_summary(summary, options, model_name, _describe_backend(backend), post, outputs)
    return summary


__all__ = ["StreamSpec", "read_sources_file", "run_multi_camera", "run_multi_loop", "stream_specs"]
