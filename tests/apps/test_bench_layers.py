"""``bench --profile-layers``: per-layer times from the TensorRT backend's profiler hook (on the
fake GPU of tests/trt_fakes.py), in runs separate from the timed ones, written with the record;
refused up front for a backend without the hook."""

from __future__ import annotations

import json

import pytest
from trt_fakes import LAYER_MS, install, write_engine

from detnet_trt.apps.bench import BenchOptions, benchmark, format_layer_table
from detnet_trt.cli import main
from detnet_trt.core.errors import InputError
from detnet_trt.runtime.backends.ort import OnnxRuntimeBackend
from detnet_trt.runtime.backends.tensorrt import TensorRTBackend

SMALL = {"iterations": 3, "warmup": 0.0, "min_iterations": 1, "end_to_end": False, "frame_size": (48, 64)}


def test_layers_of_each_batch_size_in_runs_of_their_own(monkeypatch, tmp_path) -> None:
    gpu = install(monkeypatch)
    backend = TensorRTBackend(write_engine(tmp_path))
    record = benchmark(backend, BenchOptions(batches=(1, 4), profile_layers=5, **SMALL), machine=False)
    assert gpu.profiled == 2 * 5  # only the profiled runs had the profiler attached
    assert record["settings"]["profile_layers"] == 5
    for entry, n in zip(record["results"], (1, 4)):
        layers = entry["layers"]
        assert layers["runs"] == 5 and [r["layer"] for r in layers["layers"]] == ["stage4.conv", "stem.conv + relu",
                                                                                   "head.topk"]
        assert layers["layers"][0]["mean_ms"] == pytest.approx(LAYER_MS["stage4.conv"] * n)
        assert layers["layer_sum_ms"] == pytest.approx(sum(LAYER_MS.values()) * n)
    assert not backend.is_open and gpu.memory == {}
    table = format_layer_table(record)
    assert "per-layer time, batch 4 (TensorRT profiler)" in table and "sum of 3 layers, 5 profiled runs" in table


def test_profile_layers_needs_the_hook(tiny_onnx) -> None:
    with pytest.raises(InputError, match="--profile-layers needs a TensorRT engine; this is a onnxruntime model"):
        benchmark(OnnxRuntimeBackend(tiny_onnx), BenchOptions(profile_layers=3, **SMALL), machine=False)


def test_cli_writes_the_layers_with_the_record(monkeypatch, tmp_path, capsys) -> None:
    install(monkeypatch)
    engine = write_engine(tmp_path)
    out = tmp_path / "bench.json"
    rc = main(["bench", "--model", str(engine), "--batch", "2", "--iterations", "2", "--warmup", "0", "--no-e2e",
               "--profile-layers", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "per-layer time, batch 2" in printed and "stage4.conv" in printed
    record = json.loads(out.read_text())
    assert record["results"][0]["layers"]["runs"] == 20  # the flag's default
    assert "--profile-layers 20" in record["command"]


def test_end_to_end_letterboxes_into_the_engines_input(monkeypatch, tmp_path) -> None:
    """The end-to-end figure times what Detector.__call__ does: no host copy into the pinned input;
    the infer-only figure copies its prepared batch once per call."""
    import numpy as np

    install(monkeypatch)
    copies: list[str] = []
    real = np.copyto

    def spy(dst, src, *args, **kwargs):
        if np.shape(src) == (2, 3, 16, 16):
            copies.append("batch")
        return real(dst, src, *args, **kwargs)

    monkeypatch.setattr(np, "copyto", spy)
    options = BenchOptions(batches=(2,), **{**SMALL, "end_to_end": True})
    record = benchmark(TensorRTBackend(write_engine(tmp_path)), options, machine=False)
    runs = 1 + 3  # one warm-up call (warmup 0 s) and 3 timed, per figure
    assert len(copies) == runs  # the infer-only figure's only
    assert record["results"][0]["end_to_end"]["latency_ms"]["n"] == 3
