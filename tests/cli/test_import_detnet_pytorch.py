"""``detnet-trt import-detnet-pytorch``: their checkpoint file -> a detnet_trt checkpoint; bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fpn_checkpoint import their_checkpoint

from detnet_trt.cli import main
from detnet_trt.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def their_file(tmp_path_factory) -> Path:
    ckpt = their_checkpoint()  # 6 classes with background
    path = tmp_path_factory.mktemp("theirs") / "fpn_1_7_100.pth"
    torch.save(ckpt, path)
    return path


def test_import_writes_a_checkpoint(tmp_path, their_file, capsys) -> None:
    names = tmp_path / "names.txt"
    names.write_text("__background__\ncat\ndog\nbird\ncar\nbus\n")
    out = tmp_path / "model.pt"
    rc = main(["import-detnet-pytorch", str(their_file), "--classes", str(names), "-o", str(out),
               "--input-size", "64x96", "--proposals", "20"])
    assert rc == 0, capsys.readouterr().err
    model, ckpt = load_checkpoint(out)
    assert ckpt["model"] == "detnet59_fpn" and ckpt["class_names"] == ["cat", "dog", "bird", "car", "bus"]
    assert model.input_size == (64, 96) and model.config.topk == 20 and model.config.pool_size == 7
    assert ckpt["extra"]["source"] == "fpn_1_7_100.pth" and ckpt["extra"]["epoch"] == 7
    assert "detnet59_fpn, 5 classes, input 64x96" in capsys.readouterr().out
    # never over an existing file without --force
    assert main(["import-detnet-pytorch", str(their_file), "--classes", str(names), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("voc", "has 6 classes (background included), not 21"),
        ("coco", "has 6 classes (background included), not 81"),
        ("notafile", "neither voc, coco nor a file"),
        ("garbage", "cannot be loaded with torch.load(weights_only=True)"),
        ("pickle", "cannot be loaded with torch.load(weights_only=True)"),
        ("missing", "no such file"),
        ("crop", "pooling_mode 'crop'"),
        ("cag", "class_agnostic"),
        ("keys", "does not fit the DetNet-59 FPN layout: 1 missing key(s): rpn.box.weight"),
    ],
)
def test_bad_input_is_one_line(tmp_path, their_file, capsys, setup, message) -> None:
    src, classes = str(their_file), setup if setup in ("voc", "coco", "notafile") else "voc"
    if setup in ("garbage", "pickle", "crop", "cag", "keys"):
        src = str(tmp_path / "bad.pth")
        if setup == "garbage":
            Path(src).write_bytes(b"not a checkpoint at all")
        elif setup == "pickle":
            torch.save({"model": {}, "optimizer": object()}, src)
        else:
            ckpt = torch.load(their_file, weights_only=True)
            if setup == "crop":
                ckpt["pooling_mode"] = "crop"
            elif setup == "cag":
                ckpt["class_agnostic"] = True
            else:
                del ckpt["model"]["RCNN_rpn.RPN_bbox_pred.weight"]
            torch.save(ckpt, src)
    elif setup == "missing":
        src = str(tmp_path / "absent.pth")
    if setup in ("crop", "cag", "keys"):
        (tmp_path / "n.txt").write_text("a\nb\nc\nd\ne\n")
        classes = str(tmp_path / "n.txt")
    rc = main(["import-detnet-pytorch", src, "--classes", classes, "-o", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.pt").exists()


def test_usage_errors_are_one_line(tmp_path, capsys) -> None:
    try:
        rc = main(["import-detnet-pytorch", "x.pth", "--classes", "voc", "-o", str(tmp_path / "o.pt"), "--input-size", "600x1000"])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "multiples of 16" in err and err.count("\n") == 1
