"""``serve`` + ``client``: a real PyTriton tritonserver on loopback, concurrent clients over HTTP and
gRPC, malformed requests, metrics, and a clean stop. One server for the module (it takes a few
seconds to start and stop)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import InputError
from detnet_trt.runtime.backends import load_backend
from detnet_trt.runtime.letterbox import Letterboxer
from detnet_trt.runtime.postprocess import postprocess

pytest.importorskip("pytriton", reason="nvidia-pytriton not installed (pip install 'detnet-trt[triton]')")
pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")
pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")

from detnet_trt.serving.triton.client import DetnetClient, ServerError
from detnet_trt.serving.triton.server import DetnetTritonServer, ServeOptions, check_ports_free, free_port

pytestmark = pytest.mark.slow
CONF, IOU, MAX_DET = 0.25, 0.5, 100
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def onnx_model(tiny_onnx) -> Path:
    return Path(tiny_onnx)


@pytest.fixture(scope="module")
def server(onnx_model):
    srv = DetnetTritonServer(
        load_backend(onnx_model),
        options=ServeOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                             max_batch=8, queue_delay_us=30_000),
        post=PostprocessConfig(conf=CONF, iou=IOU, max_det=MAX_DET),
    )
    try:
        srv.start()
    except Exception as err:  # noqa: BLE001 - report exactly why tritonserver did not come up
        srv.stop()
        pytest.skip(f"PyTriton's tritonserver could not start here: {type(err).__name__}: {err}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def reference(onnx_model):
    """The same model run locally, without any server."""
    backend = load_backend(onnx_model)
    backend.open()

    def run(frames):
        lb = Letterboxer(backend.meta.input_size, backend.meta.layout, max_batch=len(frames))
        batch, infos = lb.fill(frames)
        return postprocess(backend.infer(batch), infos, CONF, IOU, MAX_DET)

    yield run
    backend.close()


def _frames(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[: h // 2, : w // 3] = rng.integers(0, 256, 3, dtype=np.uint8)  # some structure
        out.append(img)
    return out


def _assert_same(got, want) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        np.testing.assert_array_equal(g.class_ids, w.class_ids)
        np.testing.assert_allclose(g.scores, w.scores, atol=1e-5)
        np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-2)


def test_concurrent_clients_get_the_local_results(server, reference):
    threads_n, requests_n = 6, 4
    seen_before = len(server.batches_seen)
    results: dict[tuple[int, int], tuple[list, list]] = {}
    errors: list[BaseException] = []
    sent = [0]
    lock = threading.Lock()

    def worker(t: int) -> None:
        url, proto = (server.http_url, "http") if t % 2 == 0 else (server.grpc_url, "grpc")
        try:
            with DetnetClient(url, protocol_name=proto) as client:
                for r in range(requests_n):
                    frames = _frames(1000 * t + r, 1 + (t + r) % 2)
                    dets = client.detect(frames)
                    with lock:
                        results[(t, r)] = (frames, dets)
                        sent[0] += len(frames)
        except BaseException as err:  # noqa: BLE001 - collected and re-raised in the test thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert len(results) == threads_n * requests_n  # none lost
    for frames, dets in results.values():
        _assert_same(dets, reference(frames))
    assert any(len(d) for _, dets in results.values() for d in dets)  # the comparison was not vacuous
    batches = list(server.batches_seen)[seen_before:]
    assert sum(batches) == sent[0]  # every image inferred exactly once
    assert max(batches) > 1  # Triton's dynamic batcher grouped concurrent requests


def _raw_http(server, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://{server.http_url}/v2/models/detnet/infer", data=body, headers=headers, method="POST"
    )
    try:
        with _NO_PROXY.open(req, timeout=30) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def test_bad_requests_get_clear_errors_and_server_keeps_serving(server, reference):
    meta_shape = (3, *server.backend.meta.input_size)
    good = np.zeros((1, *meta_shape), np.uint8)
    size = np.array([[100, 100]], np.int32)
    cases = [
        ("wrong dtype", good.astype(np.float32), size, "data-type is 'FP32', but model 'detnet' expects 'UINT8'"),
        ("wrong shape", np.zeros((1, 3, 16, 16), np.uint8), size, "unexpected shape for input 'images'"),
        ("wrong orig_size dtype", good, size.astype(np.int64), "'orig_size' data-type is 'INT64'"),
        ("empty batch", np.zeros((0, *meta_shape), np.uint8), np.zeros((0, 2), np.int32), "byte size mismatch"),
        ("batch too large", np.zeros((9, *meta_shape), np.uint8), np.zeros((9, 2), np.int32), "batch-size"),
    ]
    for proto, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        with DetnetClient(url, protocol_name=proto) as client:
            for what, images, sizes, message in cases:
                with pytest.raises(ServerError, match="detnet") as info:
                    client.infer_raw(images, sizes)
                assert message in str(info.value), (proto, what, str(info.value))

    # corrupt bytes: a binary tensor shorter than its declared size, and a body that is not a request
    header = json.dumps(
        {"inputs": [
            {"name": "images", "shape": [1, *meta_shape], "datatype": "UINT8",
             "parameters": {"binary_data_size": int(good.nbytes)}},
            {"name": "orig_size", "shape": [1, 2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        ]}
    ).encode()
    status, text = _raw_http(
        server, header + good.tobytes()[:100],
        {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert status == 400 and "unexpected size for input 'images'" in text, text
    status, text = _raw_http(server, b"\x00\xffnot json", {"Content-Type": "application/json"})
    assert status in (400, 500) and "failed to parse the request JSON" in json.loads(text)["error"], text

    # and it still answers good requests correctly
    frames = _frames(7, 2)
    with DetnetClient(server.http_url) as client:
        _assert_same(client.detect(frames), reference(frames))


def test_metrics_endpoint(server):
    with _NO_PROXY.open(server.metrics_url, timeout=30) as resp:
        text = resp.read().decode()
    lines = [ln for ln in text.splitlines() if ln.startswith('nv_inference_request_success{model="detnet"')]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) > 0, text[:500]


def test_client_cli_prints_and_saves(server, reference, tmp_path, capsys):
    import cv2

    from detnet_trt.cli import main

    frames = _frames(11, 2)
    paths = []
    for i, f in enumerate(frames):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), f)
        paths.append(str(p))
    out = tmp_path / "out"
    assert main(["client", *paths, "--url", server.http_url, "--out", str(out)]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    want = reference(frames)
    assert [rec["image"] for rec in lines] == paths
    assert [len(rec["detections"]) for rec in lines] == [len(w) for w in want]
    assert lines[0]["detections"][0]["class_id"] == int(want[0].class_ids[0])
    assert (out / "img0.json").is_file() and cv2.imread(str(out / "img1.jpg")) is not None
    # existing outputs are not overwritten without --force
    assert main(["client", paths[0], "--url", server.http_url, "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    # a server that is not there: one clear line, exit 2
    assert main(["client", paths[0], "--url", f"127.0.0.1:{free_port()}"]) == 2
    assert "cannot get model 'detnet'" in capsys.readouterr().err


def test_non_loopback_bind_needs_explicit_flag(onnx_model):
    backend = load_backend(onnx_model)
    with pytest.raises(InputError, match="--allow-remote"):
        DetnetTritonServer(backend, options=ServeOptions(host="0.0.0.0"))
    DetnetTritonServer(backend, options=ServeOptions(host="0.0.0.0", allow_remote=True))  # allowed, not started
    DetnetTritonServer(backend, options=ServeOptions(host="localhost"))  # loopback is fine
    with pytest.raises(InputError, match="IPv6 addresses cannot be served"):
        ServeOptions(host="::1")  # PyTriton 0.7 cannot bind it: refused, not a hang or a traceback


@pytest.mark.parametrize(
    "fields,flag",
    [
        ({"max_batch": 0}, "--max-batch"),
        ({"queue_delay_us": -5}, "--queue-delay-us"),
        ({"http_port": 70000}, "--port"),
        ({"grpc_port": 0}, "--grpc-port"),
        ({"metrics_port": -1}, "--metrics-port"),
        ({"host": "192.0.2.1"}, "--allow-remote"),
        ({"host": "::1"}, "127.0.0.1"),
        ({"host": "myhost.example"}, "not an IPv4 address"),
        ({"http_port": 9000, "grpc_port": 9000}, "--port and --grpc-port are both 9000"),
        ({"grpc_port": 9001, "metrics_port": 9001}, "--grpc-port and --metrics-port are both 9001"),
    ],
)
def test_bad_serve_option_names_its_flag(fields, flag):
    with pytest.raises(InputError, match=flag):
        ServeOptions(**fields)


def test_cli_serve_checks_options_before_loading_the_model(tmp_path, capsys):
    from detnet_trt.cli import main

    missing = str(tmp_path / "missing.onnx")
    assert main(["serve", "--model", missing, "--max-batch", "0"]) == 2
    assert "argument --max-batch: expected an integer in 1..256, got 0" in capsys.readouterr().err
    assert main(["serve", "--model", missing, "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_server_stops_cleanly(server):
    """Last in the module: stopping frees the ports and the backend; stopping again is a no-op."""
    host, port = server.host, server.ports["http"]
    server.stop()
    assert not server.backend.is_open
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()
    # the same ports pass the start-up check at once (connections left in TIME_WAIT do not block a restart)
    check_ports_free(host, server.options.port_flags())
    server.stop()
