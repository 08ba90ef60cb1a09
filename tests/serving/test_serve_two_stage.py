"""``serve`` + ``client`` with the two-stage DetNet-59 FPN (its NMS in the graph): a real PyTriton
tritonserver on loopback answers HTTP, gRPC and the ``client`` CLI with the detections the same
ONNX gives locally. Tiny: random weights in DetNet_pytorch's key layout, 64 x 96 input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fpn_checkpoint import their_model

from detnet_trt.core.config import PostprocessConfig
from detnet_trt.runtime.backends import load_backend
from detnet_trt.runtime.letterbox import Letterboxer
from detnet_trt.runtime.postprocess import postprocess

pytest.importorskip("pytriton", reason="nvidia-pytriton not installed (pip install 'detnet-trt[triton]')")
pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")
pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")

from detnet_trt.serving.triton.client import DetnetClient
from detnet_trt.serving.triton.server import DetnetTritonServer, ServeOptions, free_port

pytestmark = pytest.mark.slow
CONF, IOU, MAX_DET = 0.0, 0.5, 100


@pytest.fixture(scope="module")
def fpn_onnx(tmp_path_factory) -> Path:
    from detnet_trt.export.onnx import export_onnx
    from detnet_trt.models.checkpoint import save_checkpoint

    model = their_model()
    d = tmp_path_factory.mktemp("fpn_serve")
    return export_onnx(save_checkpoint(model, d / "fpn.pt"), d / "fpn.onnx", verify=False)


@pytest.fixture(scope="module")
def server(fpn_onnx):
    srv = DetnetTritonServer(
        load_backend(fpn_onnx),
        options=ServeOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), max_batch=4),
        post=PostprocessConfig(conf=CONF, iou=IOU, max_det=MAX_DET),
    )
    try:
        srv.start()
    except Exception as err:  # noqa: BLE001 - report exactly why tritonserver did not come up
        srv.stop()
        pytest.skip(f"PyTriton's tritonserver could not start here: {type(err).__name__}: {err}")
    yield srv
    srv.stop()


def _local(fpn_onnx, frames):
    backend = load_backend(fpn_onnx)
    backend.open()
    try:
        lb = Letterboxer(backend.meta.input_size, backend.meta.layout, max_batch=len(frames))
        batch, infos = lb.fill(frames)
        return postprocess(backend.infer(batch), infos, CONF, IOU, MAX_DET)
    finally:
        backend.close()


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (int(rng.integers(40, 200)), int(rng.integers(40, 200)), 3), dtype=np.uint8)
            for _ in range(n)]


def test_http_grpc_and_client_cli_get_the_local_detections(server, fpn_onnx, tmp_path, capsys) -> None:
    import cv2

    from detnet_trt.cli import main

    frames = _frames(3)
    want = _local(fpn_onnx, frames)
    assert sum(len(w) for w in want) > 0  # something to compare
    for url in (server.http_url, f"grpc://{server.grpc_url}"):
        with DetnetClient(url) as client:
            got = client.detect(frames)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.class_ids, w.class_ids)
            np.testing.assert_allclose(g.scores, w.scores, atol=1e-5)
            np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-2)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), frames[0])
    capsys.readouterr()
    assert main(["client", str(path), "--url", server.http_url]) == 0
    rec = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(rec["detections"]) == len(want[0])
