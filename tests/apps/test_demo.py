"""Demo: the shipped model, step runner (a failing step stops the demo, naming it), helpers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detnet_trt.apps import demo
from detnet_trt.cli import main
from detnet_trt.core.errors import InputError, MissingDependencyError, OutputExistsError
from detnet_trt.models.checkpoint import load_checkpoint


def test_shipped_model_is_small_and_loads():
    assert demo.SHIPPED_MODEL.is_file(), "the demo model must be committed under detnet_trt/assets/"
    assert demo.SHIPPED_MODEL.stat().st_size < 8 * 1024 * 1024
    model, ckpt = load_checkpoint(demo.SHIPPED_MODEL)
    meta = model.meta()
    assert meta.model == "detnet_tiny" and len(meta.class_names) == 6
    assert ckpt["extra"]["train"]["val"]["AP50"] > 50


def _ckpt(tmp_path):
    p = tmp_path / "model.pt"  # the fake steps never read it; the demo only checks that it exists
    p.write_bytes(b"not read")
    return p


def _fake_steps(calls, fail_at=None, error=None):
    def make(name):
        def step(ctx):
            calls.append(name)
            if name == fail_at:
                raise error

        return step

    return tuple((name, "what", make(name)) for name in ("a", "b", "c"))


def test_steps_run_in_order_and_write_a_summary(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(demo, "STEPS", _fake_steps(calls))
    summary = demo.run_demo(demo.DemoConfig(out=tmp_path / "out", checkpoint=_ckpt(tmp_path)))
    assert calls == ["a", "b", "c"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["out"] == summary["out"]


@pytest.mark.parametrize("error", [InputError("bad input", "fix it"), RuntimeError("boom")])
def test_a_failing_step_stops_the_demo_and_names_it(tmp_path, monkeypatch, error):
    calls: list[str] = []
    monkeypatch.setattr(demo, "STEPS", _fake_steps(calls, fail_at="b", error=error))
    with pytest.raises(demo.DemoError, match=r"demo step 2/3 'b' failed: .*(bad input|RuntimeError: boom)"):
        demo.run_demo(demo.DemoConfig(out=tmp_path / "out", checkpoint=_ckpt(tmp_path)))
    assert calls == ["a", "b"]


def test_cli_reports_a_failed_step_on_one_line_and_refuses_a_full_folder(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    monkeypatch.setattr(demo, "STEPS", _fake_steps(calls, fail_at="a", error=InputError("no data")))
    assert main(["demo", "--out", str(tmp_path / "o"), "--checkpoint", str(_ckpt(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("detnet-trt demo: error: demo step 1/3 'a' failed: no data")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        demo.run_demo(demo.DemoConfig(out=tmp_path / "full", checkpoint=_ckpt(tmp_path)))


def test_tensorrt_step_carries_on_without_tensorrt(tmp_path, monkeypatch, capsys):
    import detnet_trt.build.chain as build

    def missing(*args, **kwargs):
        raise MissingDependencyError("TensorRT is not installed", "install it")

    monkeypatch.setattr(build, "build_engine", missing)
    ctx = demo._Ctx(demo.DemoConfig(out=tmp_path), tmp_path, paths={"int8": tmp_path / "m.onnx"})
    demo._step_tensorrt(ctx)  # no exception
    assert "TensorRT is not installed" in ctx.notes[0]
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_ap_table_shows_both_models_and_the_difference():
    table = demo.format_ap_table({"FP32": {"AP": 60.0, "AP50": 90.0}, "INT8": {"AP": 59.5, "AP50": 89.0}})
    lines = table.splitlines()
    assert lines[0] == "| model | AP | AP50 |"
    assert lines[2] == "| FP32 | 60.0 | 90.0 |" and lines[-1] == "| INT8 - FP32 | -0.5 | -1.0 |"


def test_demo_video_is_readable(tmp_path):
    files = []
    for i in range(2):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), np.full((50, 60, 3), 40 * i, np.uint8))
        files.append(p)
    out = demo.make_demo_video(files, tmp_path / "v.avi", frames=5, size=(48, 64))
    cap = cv2.VideoCapture(str(out))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    assert n == 5 and shape == (48, 64, 3)


def test_latency_plot_is_a_png(tmp_path):
    rec = {"backend": {"backend": "onnxruntime"}, "results": [{"infer": {"samples_ms": [1.0, 2.0, 3.0]},
                                                               "end_to_end": {"samples_ms": [2.0, 3.0, 4.0]}}]}
    out = demo.plot_latency({"FP32": rec, "INT8": rec}, tmp_path / "l.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_shipped_model(tmp_path, capsys):
    """Every real step of ``make demo`` on the shipped model, on a smaller scale (about a minute)."""
    cfg = demo.DemoConfig(
        out=tmp_path / "demo_out", images=30, calib_images=16, sample_images=2, video_frames=6,
        bench_seconds=0.3, progress=False,
    )
    summary = demo.run_demo(cfg)
    out = tmp_path / "demo_out"
    ap = json.loads((out / "ap_table.json").read_text())
    # the shipped model detects the demo's unseen scenes, in FP32 and in INT8
    assert ap["FP32"]["AP50"] > 50 and ap["INT8"]["AP50"] > 50
    assert abs(ap["INT8"]["AP"] - ap["FP32"]["AP"]) < 10
    pictures = sorted((out / "detections").glob("*.jpg"))
    assert len(pictures) == 2 and cv2.imread(str(pictures[0])) is not None
    cap = cv2.VideoCapture(str(out / "camera" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    assert len((out / "camera" / "detections.jsonl").read_text().splitlines()) == 6
    assert cv2.imread(str(out / "latency.png")) is not None
    assert summary["results"]["bench_median_ms"]["INT8"]["infer"] > 0
    if "engine" not in summary["paths"]:  # no TensorRT here: the step said so and the demo went on
        assert any("TensorRT" in n for n in summary["notes"])
    assert json.loads((out / "summary.json").read_text())["out"] == str(out.resolve())
    assert "[9/9] tensorrt" in capsys.readouterr().err
