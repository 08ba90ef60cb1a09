"""Per-stage timing of the camera loop: live figures and the end-of-run summary.

Stages of one frame: ``capture`` (waiting for / decoding the frame), ``pre`` (letterbox into the
input buffer), ``infer`` (backend), ``post`` (threshold + NMS + letterbox undo), ``sinks``
(window, JSON lines, recorder). Two more figures per frame: ``latency`` (frame arrival to sinks
done, what a user sees as lag) and ``stall`` (time the inference thread waited for the next
prepared frame; with overlap on this is the pipeline's idle time).

A loop may run all day, so memory is bounded: mean and max are exact, percentiles come from a
uniform reservoir sample of :data:`RESERVOIR` values per stage (exact for shorter runs).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

STAGES = ("capture", "pre", "infer", "post", "sinks")
EXTRA = ("latency", "stall")
RESERVOIR = 100_000


class StageStat:
    """Running statistics of one stage, in seconds: exact count/mean/max, reservoir percentiles,
    and an exponential moving average for live display."""

    def __init__(self, reservoir: int = RESERVOIR, ema: float = 0.1, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.recent = 0.0  # EMA
        self._ema = ema
        self._cap = reservoir
        self._values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.recent = seconds if self.count == 1 else self.recent + self._ema * (seconds - self.recent)
        if len(self._values) < self._cap:
            self._values.append(seconds)
        else:  # Algorithm R
            j = self._rng.randrange(self.count)
            if j < self._cap:
                self._values[j] = seconds

    def summary(self) -> dict[str, float]:
        """``{count, mean_ms, p50_ms, p99_ms, max_ms}``; zeros when nothing was recorded."""
        if not self.count:
            return {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        p50, p99 = np.percentile(np.asarray(self._values), [50, 99])
        return {
            "count": self.count,
            "mean_ms": round(1e3 * self.total / self.count, 4),
            "p50_ms": round(1e3 * float(p50), 4),
            "p99_ms": round(1e3 * float(p99), 4),
            "max_ms": round(1e3 * self.max, 4),
        }


class LoopTimer:
    """Stage statistics plus frame counting and FPS (overall, and recent as an EMA)."""

    def __init__(self) -> None:
        self.stages = {name: StageStat() for name in STAGES + EXTRA}
        self.frames = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self._fps_recent = 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage].add(seconds)

    def frame_done(self, t: float) -> None:
        if self.t_last is not None:
            dt = t - self.t_last
            if dt > 0:
                fps = 1.0 / dt
                self._fps_recent = fps if self.frames <= 1 else self._fps_recent + 0.1 * (fps - self._fps_recent)
        if self.t_first is None:
            self.t_first = t
        self.t_last = t
        self.frames += 1

    def start(self, t: float) -> None:
        """Mark when the loop started waiting for its first frame (the FPS clock starts here)."""
        if self.t_first is None:
            self.t_first = t

    def stop(self, t: float) -> None:
        """Mark when the loop ended: the wall time runs to here, so time spent waiting for a
        source (reconnecting) after its last frame counts too."""
        if self.t_last is None or t > self.t_last:
            self.t_last = t

    @property
    def wall(self) -> float:
        if self.t_first is None or self.t_last is None:
            return 0.0
        return max(0.0, self.t_last - self.t_first)

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else 0.0

    @property
    def fps_recent(self) -> float:
        return self._fps_recent

    def status_lines(self) -> list[str]:
        """Two short lines for the window / log: FPS and recent per-stage milliseconds."""
        ms = " ".join(f"{k} {1e3 * self.stages[k].recent:.1f}" for k in STAGES)
        return [f"FPS {self.fps_recent:.1f}  latency {1e3 * self.stages['latency'].recent:.0f} ms", f"ms: {ms}"]

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "wall_s": round(self.wall, 4),
            "fps": round(self.fps, 3),
            "stages": {k: self.stages[k].summary() for k in STAGES + EXTRA},
        }


MULTI_STAGES = ("gather", "pre", "infer", "post", "sinks")


class StreamStat:
    """One stream of a multi-stream run: processed frames, FPS over the run, capture-to-sink latency."""

    def __init__(self) -> None:
        self.frames = 0
        self.latency = StageStat()
        self.t_last: float | None = None

    def frame_done(self, t: float, latency: float) -> None:
        self.frames += 1
        self.latency.add(latency)
        self.t_last = t


class MultiTimer:
    """Statistics of a multi-stream run: per batch ``gather`` (waiting for and collecting the
    frames), ``pre`` (letterboxing them into the batch buffer), ``infer`` (every backend call of
    the batch) and ``stall`` (the inference thread waiting for a batch); per frame ``post``,
    ``sinks`` and ``latency`` (capture to sinks done); per stream frames, FPS and latency; the
    batch-size histogram and backend calls."""

    def __init__(self, streams: int) -> None:
        self.stages = {name: StageStat() for name in MULTI_STAGES + EXTRA}
        self.streams = [StreamStat() for _ in range(streams)]
        self.batch_sizes: dict[int, int] = {}
        self.batches = 0
        self.backend_calls = 0
        self.frames = 0
        self.t_start: float | None = None
        self.t_end: float | None = None
        self._fps_recent = 0.0
        self._t_batch: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage].add(seconds)

    def start(self, t: float) -> None:
        self.t_start = t

    def stop(self, t: float) -> None:
        self.t_end = t

    def batch_done(self, size: int, calls: int, t: float) -> None:
        self.batches += 1
        self.backend_calls += calls
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
        if self._t_batch is not None and t > self._t_batch:
            fps = size / (t - self._t_batch)
            self._fps_recent = fps if self.batches <= 2 else self._fps_recent + 0.1 * (fps - self._fps_recent)
        self._t_batch = t

    def frame_done(self, stream: int, t: float, latency: float) -> None:
        self.frames += 1
        self.streams[stream].frame_done(t, latency)
        self.add("latency", latency)
        self.t_end = t

    @property
    def wall(self) -> float:
        if self.t_start is None or self.t_end is None:
            return 0.0
        return max(0.0, self.t_end - self.t_start)

    def fps_of(self, frames: int) -> float:
        return frames / self.wall if self.wall > 0 else 0.0

    def status_lines(self) -> list[str]:
        """Two short lines for the window / log: total FPS, recent per-stage milliseconds."""
        ms = " ".join(f"{k} {1e3 * self.stages[k].recent:.1f}" for k in MULTI_STAGES)
        return [f"FPS {self._fps_recent:.1f} ({len(self.streams)} streams)  latency "
                f"{1e3 * self.stages['latency'].recent:.0f} ms", f"ms: {ms}"]

    def summary(self) -> dict[str, Any]:
        """Overall figures; the caller adds each stream's source counters to ``streams``."""
        return {
            "frames": self.frames,
            "wall_s": round(self.wall, 4),
            "fps": round(self.fps_of(self.frames), 3),
            "batches": self.batches,
            "backend_calls": self.backend_calls,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "mean_batch": round(self.frames / self.batches, 3) if self.batches else 0.0,
            "stages": {k: self.stages[k].summary() for k in MULTI_STAGES + EXTRA},
            "streams": [
                {"frames": st.frames, "fps": round(self.fps_of(st.frames), 3), "latency": st.latency.summary()}
                for st in self.streams
            ],
        }


def _format_streams(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"{len(summary['streams'])} streams: {summary['frames']} frames in {summary['wall_s']:.2f} s = "
        f"{summary['fps']:.2f} FPS; {summary['batches']} batches (sizes {summary['batch_sizes']}), "
        f"{summary['backend_calls']} backend calls; dropped {summary.get('dropped', 0)}, reconnects "
        f"{summary.get('reconnects', 0)}; stopped: {summary.get('stop_reason', '?')}",
        f"{'stream':<16}{'frames':>8}{'FPS':>9}{'dropped':>9}{'reconn':>8}{'lat p50':>9}{'lat p99':>9}  source",
    ]
    for st in summary["streams"]:
        lat = st["latency"]
        lines.append(f"{st['stream'][:15]:<16}{st['frames']:>8}{st['fps']:>9.2f}{st.get('dropped', 0):>9}"
                     f"{st.get('reconnects', 0):>8}{lat['p50_ms']:>9.1f}{lat['p99_ms']:>9.1f}  "
                     f"{st.get('source', '?')}{' (ended: ' + st['error'] + ')' if st.get('error') else ''}")
    return lines


def _tracks_and_events(summary: dict[str, Any]) -> list[str]:
    """The ``--track`` and ``--mqtt`` lines of the summary (none without them)."""
    out = []
    if summary.get("tracking"):
        out.append("tracks: " + "; ".join(f"stream {k}: {v['tracks']}, {v['alive']} alive at the end"
                                          for k, v in summary["tracking"].items()))
    m = summary.get("mqtt")
    if m:
        out.append(f"mqtt {m['broker']}: {m['messages']} messages, {m['delivered']} delivered, {m['undelivered']} "
                   f"undelivered ({m['dropped']} dropped from a full queue, {m['pending']} left at the end); "
                   f"{m['disconnects']} disconnects")
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable end-of-run table (the ``--stats-json`` content, as text)."""
    if "streams" in summary:
        lines = _format_streams(summary)
        lines.append(f"{'stage':<9}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for name, s in summary["stages"].items():
            lines.append(f"{name:<9}{s['mean_ms']:>10.2f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['max_ms']:>10.2f}")
        return "\n".join(lines + _tracks_and_events(summary))
    kind = summary.get("source_kind")
    lines = [
        f"source {summary.get('source', '?')}{f' ({kind})' if kind else ''}: {summary['frames']} frames in {summary['wall_s']:.2f} s = "
        f"{summary['fps']:.2f} FPS; dropped {summary.get('dropped', 0)}, reconnects {summary.get('reconnects', 0)}; "
        f"stopped: {summary.get('stop_reason', '?')}",
        f"{'stage':<9}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for name, s in summary["stages"].items():
        lines.append(f"{name:<9}{s['mean_ms']:>10.2f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['max_ms']:>10.2f}")
    return "\n".join(lines + _tracks_and_events(summary))
