"""No network at run time: a run of the main commands resolves no remote host and connects nowhere
but loopback, libraries' telemetry included (ONNX Runtime >= 1.29 resolves a telemetry host on
Linux unless ``ORT_DISABLE_TELEMETRY=1`` is set before it starts).

How: every subprocess runs with ``tests/netlog.c`` preloaded, which logs each ``getaddrinfo`` of a
non-local name and each ``connect`` / ``sendto`` to a non-loopback address, then lets the call
through. The test fails on any logged line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHIPPED = ROOT / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"


@pytest.fixture(scope="module")
def netlog(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler for the connect/getaddrinfo logger")
    out = tmp_path_factory.mktemp("netlog") / "netlog.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(out), str(TESTS / "netlog.c"), "-ldl"], check=True)
    return out


def _run(netlog: Path, log: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}  # the package must set it
    env.update(LD_PRELOAD=str(netlog), NETLOG_FILE=str(log), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "detnet_trt", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_logger_sees_a_lookup(netlog, tmp_path) -> None:
    """The logger itself works: a plain remote lookup is recorded (whether or not it resolves)."""
    log = tmp_path / "net.log"
    env = dict(os.environ, LD_PRELOAD=str(netlog), NETLOG_FILE=str(log))
    code = "import socket\ntry:\n    socket.getaddrinfo('example.invalid', 80)\nexcept OSError:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert "getaddrinfo example.invalid" in log.read_text()


def test_main_commands_open_no_remote_connection(netlog, tmp_path) -> None:
    """export, quantize, eval and a 10 s benchmark through ONNX Runtime: nothing leaves the machine."""
    log = tmp_path / "net.log"
    data = tmp_path / "data"
    steps = [
        ["synth", "--out", str(data), "--images", "40", "--val-fraction", "0.5", "--size", "320", "--seed", "3"],
        ["export", str(SHIPPED), "-o", "m.onnx"],
        ["calib-set", "--images", str(data / "images" / "val"), "--num", "16", "-o", "calib.txt"],
        ["quantize", "m.onnx", "--calib", "calib.txt", "--method", "minmax", "-o", "m.int8.onnx"],
        ["eval", "--model", "m.int8.onnx", "--data", str(data)],
        ["bench", "--model", "m.onnx", "--duration", "10", "--warmup", "0.5"],
    ]
    for args in steps:
        res = _run(netlog, log, args, tmp_path)
        assert res.returncode == 0, f"{args[0]}: {res.stderr[-2000:]}"
    seen = log.read_text() if log.exists() else ""
    assert seen == "", f"network use at run time:\n{seen}"


def test_onnxruntime_is_imported_only_through_core_offline() -> None:
    """The telemetry switch works only if it is set before ONNX Runtime's first import."""
    import ast

    direct = []
    for path in sorted((ROOT / "detnet_trt").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "detnet_trt/core/offline.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n == "onnxruntime" or n.startswith("onnxruntime.") for n in names):
                direct.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not direct, "import ONNX Runtime with detnet_trt.core.offline.import_ort():\n" + "\n".join(direct)


def test_import_ort_sets_the_switch_unless_the_user_did(monkeypatch) -> None:
    from detnet_trt.core import offline

    monkeypatch.delenv(offline.TELEMETRY_ENV, raising=False)
    assert offline.import_ort().__name__ == "onnxruntime"
    assert os.environ[offline.TELEMETRY_ENV] == "1"
    monkeypatch.setenv(offline.TELEMETRY_ENV, "0")
    assert offline.import_ort("onnxruntime.quantization").__name__ == "onnxruntime.quantization"
    assert os.environ[offline.TELEMETRY_ENV] == "0"  # the user's choice stands
    with pytest.raises(ValueError, match="not an ONNX Runtime module"):
        offline.import_ort("os")
