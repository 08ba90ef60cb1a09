"""Several streams through a real TensorRT engine (marked ``gpu``: skipped, never faked, without
CUDA + TensorRT + pycuda): an engine whose largest batch (2) is below the number of streams (3),
so every batch is split; inference runs on the loop's inference thread.

Run on a GPU machine: ``python -m pytest -m gpu tests/apps/camera/test_camera_multi_gpu.py``."""

from __future__ import annotations

import json

import pytest
from camera_fakes import write_video

from detnet_trt.apps.camera import CameraOptions, run_multi_camera
from detnet_trt.core.config import PostprocessConfig

pytestmark = pytest.mark.gpu


def test_three_streams_through_an_engine_of_max_batch_2(tiny_onnx, tmp_path) -> None:
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions

    engine = build_engine(tiny_onnx, tmp_path / "tiny.engine",
                          BuildOptions(precision="fp32", batch=(1, 2, 2), progress=False))
    videos = [str(write_video(tmp_path / f"v{k}.mp4", 6 + k, y=8 + 32 * k)) for k in range(3)]
    post = PostprocessConfig(conf=0.0)
    out_trt, out_ort = tmp_path / "trt.jsonl", tmp_path / "ort.jsonl"
    s = run_multi_camera(str(engine), videos, CameraOptions(show=False, jsonl=out_trt, log_interval=None), post,
                         handle_signals=False)
    run_multi_camera(tiny_onnx, videos, CameraOptions(show=False, jsonl=out_ort, log_interval=None), post,
                     handle_signals=False)
    assert s["max_batch"] == 2 and s["frames"] == 21
    assert s["batch_sizes"] == {"1": 1, "2": 1, "3": 6}  # 6, 7 and 8 frames; batches of 3 split into 2 + 1
    assert s["backend_calls"] == 6 * 2 + 1 + 1
    trt = [json.loads(line) for line in out_trt.read_text().splitlines()]
    ort = [json.loads(line) for line in out_ort.read_text().splitlines()]
    key = sorted((r["stream"], r["frame"]) for r in trt)
    assert key == sorted((r["stream"], r["frame"]) for r in ort)
    by_ort = {(r["stream"], r["frame"]): r for r in ort}
    for r in trt:  # FP32 engine and ONNX Runtime: the same top boxes, frame by frame, stream by stream
        a, b = r["detections"][0], by_ort[(r["stream"], r["frame"])]["detections"][0]
        assert a["class_id"] == b["class_id"] and a["score"] == pytest.approx(b["score"], abs=1e-2)
        assert a["box"] == pytest.approx(b["box"], abs=1.0)
