"""Benchmark statistics on fake backends of known latency, the GPU-timing hook, record and plot."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from detnet_trt.apps.bench import BenchOptions, benchmark, format_table, latency_stats, machine_info, plot_benchmark
from detnet_trt.core.errors import InputError
from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.backends.base import Backend


class SleepBackend(Backend):
    """Sleeps ``per_call + per_image * batch`` seconds; optional GPU-timing hook with fixed values."""

    name = "sleep"

    def __init__(self, per_call=0.0, per_image=0.0, pattern=None, max_batch=None):
        super().__init__(ModelMeta("fake", ["a", "b"], (32, 32), topk=4), max_batch=max_batch)
        self.per_call, self.per_image = per_call, per_image
        self.pattern = pattern  # cycle of sleep times, overrides per_call
        self.calls = 0
        self.opened = 0

    def _open(self):
        self.opened += 1

    def _close(self):
        pass

    def _infer(self, images):
        n = images.shape[0]
        t = self.pattern[self.calls % len(self.pattern)] if self.pattern else self.per_call + self.per_image * n
        self.calls += 1
        time.sleep(t)
        return {
            "boxes": np.tile(np.float32([[2, 2, 10, 10]]), (n, 4, 1)),
            "scores": np.full((n, 4), 0.5, np.float32),
            "class_ids": np.zeros((n, 4), np.int32),
        }


class HookBackend(SleepBackend):
    def gpu_timings(self):
        return {"h2d": 0.25, "compute": 2.0, "d2h": 0.125}


def test_latency_stats_known_values():
    s = latency_stats(list(range(1, 101)))  # 1..100 ms
    assert (s["min"], s["max"], s["n"]) == (1, 100, 100)
    assert s["mean"] == pytest.approx(50.5) and s["median"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["cv"] == pytest.approx(np.std(np.arange(1, 101), ddof=1) / 50.5)
    assert latency_stats([5.0])["cv"] == 0.0
    with pytest.raises(InputError):
        latency_stats([])


def test_sleep_backend_latency_and_throughput():
    sleep = 0.02
    be = SleepBackend(per_call=sleep)
    rec = benchmark(be, BenchOptions(batches=(1, 4), iterations=12, warmup=0.0, end_to_end=False), machine=False)
    assert [r["batch"] for r in rec["results"]] == [1, 4]
    for r in rec["results"]:
        s = r["infer"]["latency_ms"]
        assert s["n"] == 12 and len(r["infer"]["samples_ms"]) == 12
        assert sleep * 1e3 <= s["min"] <= s["median"] <= s["max"]
        assert s["median"] < sleep * 1e3 + 15  # generous: a shared, loaded CI machine
        assert s["min"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
        # images/s = batch / latency (the loop adds little besides the sleep)
        expected = r["batch"] / (s["mean"] / 1e3)
        assert expected * 0.8 < r["infer"]["throughput_ips"] <= expected * 1.001
    assert rec["results"][1]["infer"]["throughput_ips"] > 3 * rec["results"][0]["infer"]["throughput_ips"]
    assert "gpu_ms" not in rec["results"][0] and rec["settings"]["gpu_timings_hook"] is False
    assert be.calls == 2 * (12 + 1)  # one warm-up call each (warmup=0 still runs once)
    assert not be.is_open  # opened by benchmark(), so closed by it


def test_duration_mode_and_min_iterations():
    be = SleepBackend(per_call=0.01)
    t0 = time.perf_counter()
    rec = benchmark(be, BenchOptions(duration=0.05, warmup=0.0, min_iterations=8, end_to_end=False), machine=False)
    assert time.perf_counter() - t0 >= 0.08  # 8 runs of >= 10 ms even though the duration is 50 ms
    assert rec["results"][0]["infer"]["latency_ms"]["n"] >= 8


def test_end_to_end_includes_preprocess_and_postprocess():
    be = SleepBackend(per_call=0.005)
    rec = benchmark(be, BenchOptions(iterations=5, warmup=0.0, frame_size=(120, 200)), machine=False)
    r = rec["results"][0]
    e2e, inf = r["end_to_end"]["latency_ms"], r["infer"]["latency_ms"]
    assert e2e["median"] >= 5.0 and e2e["n"] == 5
    stages = r["end_to_end"]["stages_ms"]
    assert set(stages) == {"preprocess", "infer", "postprocess"}
    assert stages["infer"] >= 0.5 * inf["median"]
    assert sum(stages.values()) == pytest.approx(e2e["mean"])
    assert r["end_to_end"]["frame_size"] == [120, 200]


def test_gpu_timing_hook_is_summarised():
    rec = benchmark(HookBackend(per_call=0.001), BenchOptions(iterations=4, warmup=0.0, end_to_end=False), machine=False)
    gpu = rec["results"][0]["gpu_ms"]
    assert set(gpu) == {"compute", "d2h", "h2d"}
    assert gpu["compute"]["mean"] == pytest.approx(2.0) and gpu["h2d"]["p99"] == pytest.approx(0.25)
    assert "GPU split" in format_table(rec)


def test_unstable_run_warns():
    be = SleepBackend(pattern=[0.002, 0.03])
    rec = benchmark(be, BenchOptions(iterations=10, warmup=0.0, end_to_end=False), machine=False)
    assert rec["results"][0]["infer"]["latency_ms"]["cv"] > 0.5
    assert any("unstable" in w and "coefficient of variation" in w for w in rec["warnings"])


def test_bad_arguments():
    with pytest.raises(InputError, match="maximum batch 2"):
        benchmark(SleepBackend(max_batch=2), BenchOptions(batches=(1, 4), iterations=1))
    with pytest.raises(InputError, match=">= 1"):
        benchmark(SleepBackend(), BenchOptions(batches=(0,), iterations=1))
    with pytest.raises(InputError, match="duration"):
        benchmark(SleepBackend(), BenchOptions(duration=0))


def test_record_machine_table_and_plot(tmp_path):
    rec = benchmark(SleepBackend(per_call=0.001), BenchOptions(batches=(1, 2), iterations=3, warmup=0.0, frame_size=(60, 80)))
    m = rec["machine"]
    assert m["cpu"] and m["cpu_cores_logical"] >= 1 and m["versions"]["python"]
    assert m["versions"]["numpy"] == np.__version__
    assert rec["model"]["input_size"] == [32, 32] and rec["model"]["precision"] == "fp32"
    json.dumps(rec)  # the whole record is JSON-serialisable
    table = format_table(rec)
    assert table.count("| end-to-end |") == 2 and table.count("| infer |") == 2  # 2 batches x 2 figures
    assert "end-to-end split (mean ms): batch 1: preprocess" in table
    png = plot_benchmark(rec, tmp_path / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_machine_info_without_nvidia_smi(monkeypatch):
    import detnet_trt.apps.bench as bench

    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    info = machine_info()
    assert info["gpus"] == [] and info["cuda_driver"] is None


def test_cli_bench_tiny_onnx(tiny_onnx, tmp_path, capsys):
    """The real exported model through ONNX Runtime and the CLI: record, table and plot."""
    from detnet_trt.cli import main

    js, png = tmp_path / "b.json", tmp_path / "b.png"
    rc = main(["bench", "--model", str(tiny_onnx), "--batch", "1,2", "--iterations", "2", "--warmup", "0",
               "--frame-size", "320x180", "--json", str(js), "--plot", str(png)])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads(js.read_text())
    assert [r["batch"] for r in rec["results"]] == [1, 2]
    assert all(r["infer"]["latency_ms"]["n"] == 2 and "end_to_end" in r for r in rec["results"])
    assert rec["machine"]["versions"]["onnxruntime"] and rec["model"]["sha256"]
    assert rec["command"].startswith("detnet-trt bench --model ")
    assert png.stat().st_size > 5000
    assert "| 2 | end-to-end |" in capsys.readouterr().out
    assert main(["bench", "--model", str(tiny_onnx), "--iterations", "1", "--json", str(js)]) == 2  # exists


@pytest.mark.parametrize("kw, flag", [({"batches": (1, 0)}, "--batch"), ({"batches": ()}, "--batch"),
                                      ({"duration": -1.0}, "--duration"), ({"iterations": 0}, "--iterations")])
def test_bench_options_name_the_flag(kw, flag):
    with pytest.raises(InputError, match=flag):
        BenchOptions(**kw)


def test_bench_options_timing_defaults():
    assert BenchOptions().timed_duration == 3.0  # neither given: 3 s per figure
    assert BenchOptions(iterations=5).timed_duration is None  # exactly 5 runs
    assert BenchOptions(duration=0.5, iterations=5).loop() == {"warmup": 1.0, "duration": 0.5, "iterations": 5,
                                                               "min_iterations": 10}
    assert BenchOptions(batches=[1, 4]).batches == (1, 4)  # type: ignore[arg-type]
