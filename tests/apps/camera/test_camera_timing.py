"""Per-stage statistics of the camera loop."""

from __future__ import annotations

import numpy as np
import pytest

from detnet_trt.apps.camera.timing import STAGES, LoopTimer, StageStat, format_summary


def test_stage_stat_summary_matches_numpy() -> None:
    values = np.random.default_rng(0).uniform(0.001, 0.02, 1000)
    st = StageStat()
    for v in values:
        st.add(float(v))
    s = st.summary()
    assert s["count"] == 1000
    assert s["mean_ms"] == pytest.approx(1e3 * values.mean(), abs=1e-3)
    assert s["p50_ms"] == pytest.approx(1e3 * np.percentile(values, 50), abs=1e-3)
    assert s["p99_ms"] == pytest.approx(1e3 * np.percentile(values, 99), abs=1e-3)
    assert s["max_ms"] == pytest.approx(1e3 * values.max(), abs=1e-3)


def test_stage_stat_memory_is_bounded() -> None:
    st = StageStat(reservoir=100)
    for i in range(10_000):
        st.add(i / 10_000)
    assert len(st._values) == 100
    s = st.summary()
    assert s["count"] == 10_000 and s["mean_ms"] == pytest.approx(1e3 * 0.49995)
    assert 300 < s["p50_ms"] < 700  # a uniform sample of the whole run, not the first 100


def test_empty_stage() -> None:
    assert StageStat().summary()["p99_ms"] == 0.0


def test_loop_timer_fps_and_summary_text() -> None:
    t = LoopTimer()
    t.start(10.0)
    for i in range(1, 11):
        for k in STAGES:
            t.add(k, 0.001)
        t.frame_done(10.0 + 0.1 * i)
    s = t.summary()
    assert s["frames"] == 10 and s["fps"] == pytest.approx(10.0)
    assert t.fps_recent == pytest.approx(10.0)
    s.update(source="x", dropped=3, reconnects=1, stop_reason="max-frames")
    text = format_summary(s)
    assert "10.00 FPS" in text and "dropped 3" in text and "infer" in text
