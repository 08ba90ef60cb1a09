"""``serve`` fails fast and binds where it says: a port in use, an IPv6 or out-of-range address,
equal ports, and tritonserver dying during start-up each give one line (exit 2) within seconds;
``--host localhost`` serves; the client's ``--url`` with a scheme and a missing ``--labels`` file.

The bounds asserted on times are generous (the point is "no two-minute probe", not speed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detnet_trt.core.errors import DetnetError, InputError

pytest.importorskip("pytriton", reason="nvidia-pytriton not installed (pip install 'detnet-trt[triton]')")
pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")
pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")

from detnet_trt.serving.triton import server as server_mod
from detnet_trt.serving.triton.client import DetnetClient, split_url
from detnet_trt.serving.triton.server import DetnetTritonServer, ServeOptions, check_ports_free, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
FAST_S = 30.0  # generous: a failing start took about 3 s here, the old probe 120 s


def _serve_cli(model: Path, *args: str, timeout: float = 90.0) -> tuple[int, str, str, float]:
    """``python -m detnet_trt serve --model MODEL ARGS`` in a subprocess: (rc, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "detnet_trt", "serve", "--model", str(model), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def _ports() -> list[str]:
    return ["--port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("detnet-trt serve: error:")]


def test_port_in_use_is_one_line_within_seconds(tiny_onnx):
    ports = _ports()
    with socket.socket() as holder:  # another server on our HTTP port
        holder.bind(("127.0.0.1", int(ports[1])))
        holder.listen()
        rc, _, err, took = _serve_cli(tiny_onnx, *ports)
    assert rc == 2, err
    assert _error_lines(err) == [ln for ln in err.splitlines() if ln.strip()], err  # nothing but the one line
    assert f"--port {ports[1]}: 127.0.0.1:{ports[1]} is already in use" in err and "free port with --port" in err
    assert took < FAST_S, took


def test_grpc_port_held_on_all_interfaces_is_refused(tiny_onnx):
    """A listener on 0.0.0.0 holds the port for 127.0.0.1 too; the flag named is the gRPC one."""
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(InputError, match=f"--grpc-port {port}: .*already in use.*--grpc-port"):
            check_ports_free("127.0.0.1", (("--port", free_port()), ("--grpc-port", port)))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--host", "::1"], "IPv6 addresses cannot be served"),
        (["--port", "70000"], "argument --port: expected an integer in 1..65535, got 70000"),
        (["--port", "9123", "--grpc-port", "9123"], "--port and --grpc-port are both 9123"),
        (["--port", "9124", "--metrics-port", "9124"], "--port and --metrics-port are both 9124"),
        (["--host", "no-such-host"], "is not an IPv4 address"),
    ],
)
def test_bad_bind_is_one_line(tmp_path, args, message):
    from detnet_trt.cli import main

    rc, _, err, took = _serve_cli(tmp_path / "never_loaded.onnx", *args, timeout=60)
    assert rc == 2 and len(_error_lines(err)) == 1 and message in err, err
    assert "Traceback" not in err and took < FAST_S
    assert main  # the in-process CLI imports (the subprocess above is what is checked)


def test_tritonserver_dying_at_start_fails_fast_with_its_error(tiny_onnx, monkeypatch):
    """If tritonserver exits during start-up (here: a port taken after our check), start() says why
    within seconds instead of PyTriton probing the URL for two minutes."""
    from detnet_trt.runtime.backends import load_backend

    monkeypatch.setattr(server_mod, "check_ports_free", lambda *a, **k: None)  # let the race through
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        grpc = holder.getsockname()[1]
        srv = DetnetTritonServer(
            load_backend(tiny_onnx), options=ServeOptions(http_port=free_port(), grpc_port=grpc, metrics_port=free_port())
        )
        t0 = time.monotonic()
        with pytest.raises(DetnetError, match="tritonserver exited during start-up") as info:
            srv.start()
        took = time.monotonic() - t0
    assert "already in use" in str(info.value) and "\n" not in str(info.value), info.value
    assert took < FAST_S, took
    assert not srv.backend.is_open
    srv.stop()  # idempotent after a failed start


def test_localhost_serves_and_binds_loopback(tiny_onnx, tmp_path):
    """``--host localhost`` binds 127.0.0.1 (not 255.255.255.255, as tritonserver's HTTP did with the
    name) and answers a client at ``localhost:PORT`` and at ``http://localhost:PORT``."""
    import cv2

    from detnet_trt.runtime.backends import load_backend

    http, grpc, metrics = free_port(), free_port(), free_port()
    srv = DetnetTritonServer(
        load_backend(tiny_onnx), options=ServeOptions(host="localhost", http_port=http, grpc_port=grpc, metrics_port=metrics)
    )
    try:
        srv.start()
    except DetnetError as err:
        pytest.skip(f"PyTriton's tritonserver could not start here: {err}")
    try:
        assert srv.model_ready() and srv.server_pid is not None
        listening = Path("/proc/net/tcp").read_text() if Path("/proc/net/tcp").exists() else ""
        if listening:
            rows = [ln.split() for ln in listening.splitlines()[1:]]
            local = {r[1] for r in rows if r[3] == "0A"}  # LISTEN
            assert f"0100007F:{http:04X}" in local, "HTTP not bound on 127.0.0.1"
            assert f"FFFFFFFF:{http:04X}" not in local
        frame = np.random.default_rng(3).integers(0, 256, (90, 120, 3), dtype=np.uint8)
        for url, proto, want in ((f"localhost:{http}", None, "http"), (f"http://localhost:{http}", None, "http"),
                                 (f"grpc://localhost:{grpc}", None, "grpc"), (f"localhost:{grpc}", "grpc", "grpc")):
            with DetnetClient(url, protocol_name=proto) as client:
                assert client.protocol == want
                assert len(client.detect([frame])) == 1
        # the CLI with a scheme in --url, and --labels
        img = tmp_path / "a.png"
        cv2.imwrite(str(img), frame)
        labels = tmp_path / "labels.txt"
        labels.write_text("\n".join(f"c{i}" for i in range(80)) + "\n")
        proc = subprocess.run(
            [sys.executable, "-m", "detnet_trt", "client", str(img), "--url", f"grpc://localhost:{grpc}",
             "--labels", str(labels)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        rec = json.loads(proc.stdout.splitlines()[0])
        assert all(d["class_name"].startswith("c") for d in rec["detections"]), rec
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "url,proto,want",
    [
        ("127.0.0.1:8000", None, ("127.0.0.1:8000", "http")),
        ("http://127.0.0.1:8000", None, ("127.0.0.1:8000", "http")),
        ("http://127.0.0.1:8000/", "http", ("127.0.0.1:8000", "http")),
        ("grpc://host:8001", None, ("host:8001", "grpc")),
        ("127.0.0.1:8001", "grpc", ("127.0.0.1:8001", "grpc")),
    ],
)
def test_split_url(url, proto, want):
    assert split_url(url, proto) == want


@pytest.mark.parametrize(
    "args,message",
    [
        (["--url", "https://127.0.0.1:8000"], "scheme https:// is not supported"),
        (["--url", "http://127.0.0.1:8001", "--protocol", "grpc"], "says http but --protocol is grpc"),
        (["--url", "127.0.0.1"], "expected HOST:PORT"),
        (["--url", "http://127.0.0.1:8000/v2/models"], "a path is not supported"),
        (["--labels", "missing.txt"], "--labels missing.txt: no such file"),
    ],
)
def test_client_bad_url_or_labels_is_one_line(tmp_path, capsys, args, message):
    import cv2

    from detnet_trt.cli import main

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((20, 20, 3), np.uint8))
    port = free_port()  # nothing listens: the error must come before any connection
    argv = ["client", str(img), *args] if "--url" in args else ["client", str(img), "--url", f"127.0.0.1:{port}", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
