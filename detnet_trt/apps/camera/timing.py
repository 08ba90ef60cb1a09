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


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable end-of-run table (the ``--stats-json`` content, as text)."""
    lines = [
        f"source {summary.get('source', '?')}: {summary['frames']} frames in {summary['wall_s']:.2f} s = "
        f"{summary['fps']:.2f} FPS; dropped {summary.get('dropped', 0)}, reconnects {summary.get('reconnects', 0)}; "
        f"stopped: {summary.get('stop_reason', '?')}",
        f"{'stage':<9}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
    ]
    for name, s in summary["stages"].items():
        lines.append(f"{name:<9}{s['mean_ms']:>10.2f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['max_ms']:>10.2f}")
    return "\n".join(lines)
