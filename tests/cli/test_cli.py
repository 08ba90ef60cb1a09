"""`detnet-trt export` and `detnet-trt infer`: thin wrappers, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest

from detnet_trt.cli import main
from detnet_trt.core.onnx_meta import read_onnx_meta


def _one_line_error(err: str, command: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("detnet-trt")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"detnet-trt {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_export_then_refuse_overwrite(tiny_checkpoint, tiny_onnx, tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(tiny_checkpoint), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "[N,300,4]" in text and read_onnx_meta(out).layout == "nchw"
    assert main(["export", str(tiny_checkpoint), "-o", str(out), "--layout", "nhwc"]) == 2
    assert "already exists" in _one_line_error(capsys.readouterr().err, "export")
    assert read_onnx_meta(out).layout == "nchw"  # untouched


@pytest.mark.parametrize("what", ["missing", "junk", "not-a-detnet-checkpoint"])
def test_export_errors(tmp_path, capsys, what: str) -> None:
    ckpt = tmp_path / "model.pt"
    if what == "junk":
        ckpt.write_bytes(b"junk")
    elif what == "not-a-detnet-checkpoint":
        import torch

        torch.save({"weight": torch.zeros(2)}, ckpt)  # a plain state dict
    assert main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 2
    line = _one_line_error(capsys.readouterr().err, "export")
    assert "model.pt" in line
    assert not (tmp_path / "m.onnx").exists()


def test_infer_reports_unreadable_images_and_exits_1(tiny_onnx, tmp_path, capsys) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "ok.png"), np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    rc = main(["infer", "--model", str(tiny_onnx), str(d), "--out", str(out), "--conf", "0.5", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1  # EXIT_SKIPPED_IMAGES: the others were done (tests/apps/test_corrupt_images.py)
    assert "corrupt.jpg" in captured.err and "skipped" in captured.err
    assert (out / "ok.png").is_file()
    assert [r["output"] for r in json.loads((out / "detections.json").read_text())["images"]] == ["ok.png"]
    rc = main(["infer", "--model", str(tiny_onnx), str(d / "ok.png"), "--out", str(tmp_path / "o2"), "--quiet"])
    assert rc == 0 and "1 image(s)" in capsys.readouterr().out


def test_infer_model_errors(tmp_path, capsys) -> None:
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((20, 20, 3), np.uint8))
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [x])
    foreign.write_bytes(onnx.helper.make_model(g).SerializeToString())
    for model, expected in [
        (tmp_path / "missing.pt", "no such file"),
        (foreign, "no detnet_trt metadata"),
        (tmp_path / "model.tflite", "unknown model file type"),
    ]:
        assert main(["infer", "--model", str(model), str(img), "--out", str(tmp_path / "o")]) == 2
        assert expected in _one_line_error(capsys.readouterr().err, "infer")
    assert main(["--debug", "infer", "--model", str(foreign), str(img), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_console_entry_point_exit_code(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "detnet_trt", "infer", "--model", str(tmp_path / "none.onnx"), str(tmp_path),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert "none.onnx" in _one_line_error(proc.stderr, "infer")


def test_export_checkpoint_whose_classes_do_not_match(tiny_checkpoint, tmp_path, capsys) -> None:
    import torch

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["class_names"] = ckpt["class_names"][:2]  # 2 names for a 3-class head
    bad = tmp_path / "bad_classes.pt"
    torch.save(ckpt, bad)
    assert main(["export", str(bad), "-o", str(tmp_path / "m.onnx")]) == 2
    line = _one_line_error(capsys.readouterr().err, "export")
    assert "bad_classes.pt" in line and "class names" in line


@pytest.mark.parametrize(
    "argv, says",
    [
        (["export"], "detnet-trt export: error: the following arguments are required"),
        (["bench", "--model", "m.onnx", "--batch", "x"], "detnet-trt bench: error: argument --batch"),
        (["nope"], "detnet-trt: error: argument COMMAND: invalid choice"),
        (["infer", "--model", "m.onnx", "a.jpg", "--out", "o", "--conf", "high"], "detnet-trt infer: error: argument --conf"),
    ],
)
def test_usage_errors_are_one_line(argv, says) -> None:
    """A bad command line is one line naming the problem and where the help is, exit 2 (no usage block)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "detnet_trt", *argv], capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(says) and "--help`)" in lines[0]
