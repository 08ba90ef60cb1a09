"""The options objects check the same ranges as the command line (``detnet_trt/core/limits.py``),
so an API user gets the same one-line :class:`InputError` naming the flag, before any work."""

from __future__ import annotations

import math

import pytest

from detnet_trt.apps.bench import BenchOptions
from detnet_trt.apps.camera import CameraOptions
from detnet_trt.apps.compare import CompareOptions
from detnet_trt.apps.infer import InferOptions
from detnet_trt.build.options import BuildOptions
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import InputError
from detnet_trt.core.limits import BATCH, Range
from detnet_trt.data.synth import make_synth_dataset
from detnet_trt.evaluation.coco_eval import EvalOptions
from detnet_trt.quantize.calibset import make_calib_set
from detnet_trt.quantize.options import AccuracyCheckOptions, QuantizeOptions
from detnet_trt.serving.triton.repository import TritonRepoOptions
from detnet_trt.serving.triton.server import ServeOptions
from detnet_trt.training.trainer import TrainConfig

NAN = math.nan

CASES = [
    (PostprocessConfig, {"max_det": 10**6}, "--max-det"),
    (PostprocessConfig, {"conf": NAN}, "--conf"),
    (InferOptions, {"batch": 100_000}, "--batch"),
    (EvalOptions, {"max_images": 0}, "--limit"),
    (EvalOptions, {"batch": 10**6}, "--batch"),
    (CompareOptions, {"match_iou": 0.0}, "--match-iou"),
    (CompareOptions, {"num_images": 0}, "--num"),
    (CompareOptions, {"seed": -1}, "--seed"),
    (BenchOptions, {"frame_size": (0, 0)}, "--frame-size"),
    (BenchOptions, {"batches": (1, 100_000)}, "--batch"),
    (BenchOptions, {"warmup": -1.0}, "--warmup"),
    (BenchOptions, {"duration": math.inf}, "--duration"),
    (CameraOptions, {"width": 0}, "--width"),
    (CameraOptions, {"fps": 10**6}, "--fps"),
    (CameraOptions, {"record_fps": NAN}, "--record-fps"),
    (CameraOptions, {"log_interval": -1.0}, "--log-interval"),
    (QuantizeOptions, {"percentile": 200.0}, "--percentile"),
    (QuantizeOptions, {"batch": 10**6}, "calibration batch"),
    (AccuracyCheckOptions, {"max_ap_drop": 200.0}, "--max-ap-drop"),
    (AccuracyCheckOptions, {"max_ap_drop": NAN}, "--max-ap-drop"),
    (ServeOptions, {"max_batch": 10**6}, "--max-batch"),
    (ServeOptions, {"queue_delay_us": 10**12}, "--queue-delay-us"),
    (TritonRepoOptions, {"instances": 1000}, "--instances"),
    (TritonRepoOptions, {"max_batch": 10**6}, "--max-batch"),
    (BuildOptions, {"batch": (1, 4, 100_000)}, "--batch"),
    (BuildOptions, {"topk": 10**6}, "--topk"),
    (BuildOptions, {"workspace_mib": 2**40}, "--workspace"),
    (BuildOptions, {"dla_core": 99, "precision": "fp16"}, "--dla"),
    (TrainConfig, {"data": "d", "lr": -1.0}, "--lr"),
    (TrainConfig, {"data": "d", "workers": -1}, "--workers"),
    (TrainConfig, {"data": "d", "epochs": 0}, "--epochs"),
    (TrainConfig, {"data": "d", "batch": 10**6}, "--batch"),
    (TrainConfig, {"data": "d", "imgsz": (16, 16)}, "--imgsz"),
    (TrainConfig, {"data": "d", "weight_decay": NAN}, "--weight-decay"),
    (TrainConfig, {"data": "d", "val_every": -1}, "--val-every"),
    (TrainConfig, {"data": "d", "val_images": 0}, "--val-images"),
    (TrainConfig, {"data": "d", "seed": 2**40}, "--seed"),
]


@pytest.mark.parametrize("make, kwargs, flag", CASES, ids=[f"{m.__name__}-{f}-{k}" for m, k, f in CASES])
def test_options_objects_refuse_what_the_cli_refuses(make, kwargs, flag) -> None:
    with pytest.raises(InputError) as err:
        make(**kwargs)
    assert flag in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, flag", [
    ({"max_objects": 0}, "--max-objects"), ({"size": (100_000, 100_000)}, "--size"), ({"images": 10**9}, "--images"),
    ({"seed": -1}, "--seed"),
])
def test_synth_refuses_before_writing(tmp_path, kwargs, flag) -> None:
    with pytest.raises(InputError, match=flag):
        make_synth_dataset(tmp_path / "d", progress=False, **{"images": 4, **kwargs})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, flag", [({"num": 10**12}, "--num"), ({"seed": -5}, "--seed"),
                                          ({"min_images": -1}, "--min-images")])
def test_calib_set_refuses_before_writing(tmp_path, kwargs, flag) -> None:
    (tmp_path / "imgs").mkdir()
    with pytest.raises(InputError, match=flag):
        make_calib_set(tmp_path / "imgs", tmp_path / "set.txt", **kwargs)
    assert not (tmp_path / "set.txt").exists()


@pytest.mark.parametrize("value, ok", [
    (1, True), (256, True), (0, False), (257, False), (1.5, False), (2.0, True), (True, False), ("3", False),
    (NAN, False), (math.inf, False),
])
def test_range_problem(value, ok) -> None:
    assert (BATCH.problem(value) is None) == ok


def test_open_ends_and_the_reason() -> None:
    r = Range(0, 100, integer=False, lo_open=True, why="a percentile")
    assert r.describe() == "a number in (0, 100]"
    assert r.problem(0.0) is not None and r.problem(100.0) is None and r.problem(1e-9) is None
    assert r.problem(101.0) == "expected a number in (0, 100], got 101.0 (a percentile)"
    with pytest.raises(ValueError):
        Range(0, math.inf)


def test_the_batch_buffer_is_refused_before_it_is_allocated() -> None:
    """``infer --batch 100000`` allocated a buffer for 100,000 images; the letterbox buffer's own
    check refuses it for every caller (Detector, camera, serve), before numpy is asked for memory."""
    import tracemalloc

    from detnet_trt.runtime.letterbox import Letterboxer

    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"max_batch: expected an integer in 1\.\.256, got 100000"):
            Letterboxer((640, 640), "nchw", max_batch=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert Letterboxer((64, 64), "nhwc", max_batch=256).buffer.shape == (256, 64, 64, 3)
