"""The bad values of issue 16, each by name (tests/cli/test_bad_values.py covers every option;
these are the cases a user tried, kept so that a change of range or of message is seen here)."""

from __future__ import annotations

import tracemalloc

import pytest

from detnet_trt.cli import main


def _one_line_exit_2(argv, capsys, flag: str, expected: str) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and out == "", err
    assert lines[0].startswith(f"detnet-trt {argv[0]}: error: argument {flag}: expected ") and expected in lines[0]
    return lines[0]


def test_eval_limit_0_is_refused_not_scored_as_minus_one(tmp_path, capsys) -> None:
    _one_line_exit_2(["eval", "--model", "m.onnx", "--data", str(tmp_path), "--limit", "0"], capsys, "--limit",
                     "an integer in 1..")


def test_infer_batch_100000_is_refused_without_allocating(tmp_path, capsys) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    tracemalloc.start()
    try:
        _one_line_exit_2(["infer", "--model", "m.onnx", str(img), "--out", str(tmp_path / "o"), "--batch",
                          "100000"], capsys, "--batch", "got 100000 (a batch's buffers are allocated at once")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # a batch of 100,000 320x320 images would be 30 GB
    assert not (tmp_path / "o").exists()


def test_bench_frame_size_0x0(capsys) -> None:
    _one_line_exit_2(["bench", "--model", "m.onnx", "--frame-size", "0x0"], capsys, "--frame-size", "got 0")


@pytest.mark.parametrize("args, flag, expected", [
    (["--max-objects", "0"], "--max-objects", "an integer in 1..100, got 0"),
    (["--size", "100000"], "--size", "got 100000 (8192 pixels a side"),
])
def test_synth(args, flag, expected, tmp_path, capsys) -> None:
    _one_line_exit_2(["synth", "--out", str(tmp_path / "d"), *args], capsys, flag, expected)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, flag, expected", [
    (["--lr=-1"], "--lr", "a number in (0, 10], got -1"),
    (["--workers=-1"], "--workers", "an integer in 0..256, got -1"),
])
def test_train(args, flag, expected, tmp_path, capsys) -> None:
    _one_line_exit_2(["train", "--data", str(tmp_path), "-o", str(tmp_path / "c.pt"), *args], capsys, flag, expected)
    assert list(tmp_path.iterdir()) == []


def test_quantize_percentile_200(tmp_path, capsys) -> None:
    _one_line_exit_2(["quantize", "m.onnx", "--calib", "c.txt", "-o", str(tmp_path / "q.onnx"), "--percentile",
                      "200"], capsys, "--percentile", "a number in (0, 100], got 200")
    assert list(tmp_path.iterdir()) == []


def test_export_triton_conf_2(tmp_path, capsys) -> None:
    _one_line_exit_2(["export-triton", "m.onnx", "--repo", str(tmp_path / "r"), "--conf", "2"], capsys, "--conf",
                     "a number in [0, 1], got 2")
