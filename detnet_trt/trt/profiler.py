"""Per-layer times from TensorRT's profiler (``IProfiler``), as ``trtexec --dumpProfile`` reports them.

An ``IProfiler`` attached to an execution context (``context.profiler``) is called back once per
layer with its time in milliseconds for every enqueue (``enqueue_emits_profile`` is true by
default: the enqueue then waits for its work and reports). :func:`layer_profiler` makes one that
collects the times per layer name, in engine order; :func:`summarize_layer_times` turns them into
rows, slowest first, with each layer's share of the per-run sum. Profiling slows the enqueue down
(TensorRT times each layer with events), so the profiled runs are separate from the timed ones
(trtexec's ``--separateProfileRun``), and never inside a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def layer_profiler() -> Any:
    """A ``trt.IProfiler`` whose ``times`` maps layer name -> list of ms, one entry per run."""
    import tensorrt as trt

    class _LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = {}

        def report_layer_time(self, layer_name: str, ms: Any) -> None:
            # Called from TensorRT (noexcept on the C++ side): only append.
            self.times.setdefault(str(layer_name), []).append(float(ms))

    return _LayerTimes()


def summarize_layer_times(times: Mapping[str, Sequence[float]], runs: int) -> dict[str, Any]:
    """``{"runs", "layer_sum_ms", "layers": [{layer, mean_ms, median_ms, total_ms, percent, calls}]}``,
    slowest layer first; ``mean_ms`` is per run (a layer reported twice a run counts twice)."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    rows: list[dict[str, Any]] = []
    for name, samples in times.items():
        a = np.asarray(samples, np.float64)
        rows.append({"layer": name, "total_ms": float(a.sum()), "mean_ms": float(a.sum()) / runs,
                     "median_ms": float(np.median(a)) if a.size else 0.0, "calls": int(a.size)})
    per_run = sum(r["mean_ms"] for r in rows)
    for r in rows:
        r["percent"] = 100.0 * r["mean_ms"] / per_run if per_run > 0 else 0.0
    rows.sort(key=lambda r: (-r["total_ms"], r["layer"]))
    return {"runs": runs, "layer_sum_ms": per_run, "layers": rows}


def format_layer_times(summary: dict[str, Any], top: int = 10) -> str:
    """A plain table of the ``top`` slowest layers (ms per run, share of the per-run sum)."""
    rows = summary["layers"]
    lines = [f"{'ms/run':>9}  {'%':>5}  layer"]
    for r in rows[:top]:
        lines.append(f"{r['mean_ms']:9.4f}  {r['percent']:5.1f}  {r['layer']}")
    rest = rows[top:]
    if rest:
        lines.append(f"{sum(r['mean_ms'] for r in rest):9.4f}  {sum(r['percent'] for r in rest):5.1f}  "
                     f"({len(rest)} more layers)")
    lines.append(f"{summary['layer_sum_ms']:9.4f}  100.0  sum of {len(rows)} layers, {summary['runs']} profiled runs")
    return "\n".join(lines)
