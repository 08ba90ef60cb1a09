"""Per-layer times from TensorRT's profiler: the summary (slowest first, share of the per-run sum)
and the IProfiler subclass (on the fake tensorrt module of tests/trt_fakes.py)."""

from __future__ import annotations

import pytest
from trt_fakes import install

from detnet_trt.trt.profiler import format_layer_times, layer_profiler, summarize_layer_times


def test_summary_is_slowest_first_with_shares() -> None:
    times = {"a": [1.0, 3.0], "b": [0.5, 0.5], "c": [4.0, 4.0], "twice": [0.25, 0.25, 0.25, 0.25]}
    s = summarize_layer_times(times, runs=2)
    assert [r["layer"] for r in s["layers"]] == ["c", "a", "b", "twice"]
    c, a, b, twice = s["layers"]
    assert (c["mean_ms"], c["median_ms"], c["total_ms"], c["calls"]) == (4.0, 4.0, 8.0, 2)
    assert (a["mean_ms"], a["median_ms"]) == (2.0, 2.0)
    assert (twice["mean_ms"], twice["calls"]) == (0.5, 4)  # reported twice a run: counts twice
    assert s["layer_sum_ms"] == pytest.approx(7.0)
    assert sum(r["percent"] for r in s["layers"]) == pytest.approx(100.0)
    assert c["percent"] == pytest.approx(400 / 7)
    table = format_layer_times(s, top=2).splitlines()
    assert table[1].split()[-1] == "c" and "(2 more layers)" in table[3] and "sum of 4 layers, 2 profiled runs" in table[4]
    with pytest.raises(ValueError, match="runs must be >= 1"):
        summarize_layer_times(times, runs=0)


def test_empty_profile() -> None:
    s = summarize_layer_times({}, runs=3)
    assert s == {"runs": 3, "layer_sum_ms": 0, "layers": []}


def test_layer_profiler_collects_per_layer_in_engine_order(monkeypatch) -> None:
    install(monkeypatch)
    p = layer_profiler()
    for _ in range(2):
        p.report_layer_time("conv", 0.5)
        p.report_layer_time("topk", 0.125)
    assert p.times == {"conv": [0.5, 0.5], "topk": [0.125, 0.125]} and list(p.times) == ["conv", "topk"]
