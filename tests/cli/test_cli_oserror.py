"""``detnet-trt``: an ``OSError`` escaping a command is one line and exit 2; its traceback only
with ``--debug`` (issue 16)."""

from __future__ import annotations

import errno

import pytest

import detnet_trt.cli.infer as infer_cli
from detnet_trt.cli import main


@pytest.mark.parametrize(
    "err,expected",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/out.jpg"), "No space left on device: /data/out.jpg"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/x"), "Permission denied: /ro/x"),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), "Invalid cross-device link: /a -> /b"),
        (OSError("something\nodd"), "something odd"),
    ],
)
def test_oserror_is_one_line_exit_2(monkeypatch, capsys, tmp_path, err, expected) -> None:
    def boom(args):
        raise err

    monkeypatch.setattr(infer_cli, "run", boom)
    argv = ["infer", "--model", "m.onnx", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    out = capsys.readouterr().err
    assert out == f"detnet-trt infer: error: {expected}\n"
    assert main(["--debug", *argv]) == 2
    assert "Traceback" in capsys.readouterr().err
