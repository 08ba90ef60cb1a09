"""``build --verify``: the comparison of an engine with its ONNX file, on CPU. The engine side here
is an ONNX Runtime backend (the same FP32 file, then its INT8 Q/DQ model): that tests our
matching, AP and budget logic with real detections; the TensorRT engine itself is compared in the
``gpu`` test ``test_verify_records_agreement_in_the_sidecar``."""

from __future__ import annotations

from pathlib import Path

import pytest

from detnet_trt.build.options import BuildOptions, VerifyOptions
from detnet_trt.build.verify import EngineAccuracyError, budget_message, compare_backends
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import InputError


@pytest.fixture(scope="module")
def scenes(tiny_scenes) -> dict[str, Path]:
    """Synthetic scenes reduced to the tiny model's 3 classes."""
    root = tiny_scenes(8, seed=5)
    return {"images": root / "images" / "val", "ann": root / "annotations" / "instances_val.json",
            "train": root / "images" / "train"}


def test_the_same_model_on_both_sides_agrees_fully(tiny_onnx, scenes) -> None:
    from detnet_trt.runtime.backends import load_backend

    opts = VerifyOptions(scenes["images"], scenes["ann"])
    with load_backend(tiny_onnx) as a, load_backend(tiny_onnx) as b:
        record = compare_backends(a, b, opts, PostprocessConfig(conf=0.05))
    assert record["images"] == 4 and record["engine_detections"] == record["reference_detections"] > 0
    assert record["match_rate"] == 1.0 and record["max_score_diff"] == 0.0
    assert record["ap_drop"] == 0.0 and record["over_budget"] is False and budget_message(record) is None


def test_an_int8_model_as_the_engine_side_is_measured(tiny_onnx, scenes, tmp_path) -> None:
    from detnet_trt.quantize.calibrate import quantize_onnx
    from detnet_trt.quantize.calibset import make_calib_set
    from detnet_trt.runtime.backends import load_backend

    calib = make_calib_set(scenes["train"], tmp_path / "set.txt", num=4, min_images=1)
    int8 = quantize_onnx(tiny_onnx, calib, tmp_path / "m.int8.onnx", progress=False)
    opts = VerifyOptions(scenes["images"], scenes["ann"], max_ap_drop=-1.0)  # any result is "over" a negative budget
    with load_backend(int8) as a, load_backend(tiny_onnx) as b:
        record = compare_backends(a, b, opts, PostprocessConfig(conf=0.05))
    assert 0 < record["matched"] <= min(record["engine_detections"], record["reference_detections"])
    assert 0.0 < record["match_rate"] <= 1.0 and record["max_score_diff"] is not None
    assert record["ap_drop"] == pytest.approx(record["reference_ap"] - record["engine_ap"], abs=0.011)
    assert record["over_budget"] is True and "over the -1.00 AP budget" in budget_message(record)


def test_verify_options_are_checked(scenes, tmp_path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        VerifyOptions(tmp_path / "none")
    with pytest.raises(InputError, match="--verify-annotations"):
        VerifyOptions(scenes["images"], tmp_path / "none.json")
    with pytest.raises(InputError, match="needs --verify-annotations"):
        VerifyOptions(scenes["images"], max_ap_drop=0.5)
    assert VerifyOptions(scenes["images"]).budget == pytest.approx(0.3)


def test_cli_verify_flags_need_verify(tiny_onnx, tmp_path, capsys) -> None:
    from detnet_trt.cli import main

    assert main(["build", str(tiny_onnx), "--fp16", "--max-ap-drop", "0.5", "-o", str(tmp_path / "m.engine")]) == 2
    assert "--max-ap-drop needs --verify IMAGES" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_verify_record_goes_into_the_sidecar_and_over_budget_is_exit_3(tiny_onnx, scenes, tmp_path, monkeypatch) -> None:
    """chain._verify with the comparison itself replaced (it needs the engine's GPU): the record is
    added to the sidecar that was written, and over an explicit budget it is EngineAccuracyError."""
    from detnet_trt.build import chain, verify
    from detnet_trt.build.builder import _Steps
    from detnet_trt.core.onnx_meta import read_onnx_meta
    from detnet_trt.core.sidecar import EngineInfo, read_sidecar, write_sidecar

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    write_sidecar(engine, EngineInfo(read_onnx_meta(tiny_onnx), "10.3.0", "GPU", (8, 7), "x", build={"batch": [1, 1, 1]}))
    record = {"images": 4, "engine_detections": 10, "reference_detections": 10, "matched": 9, "engine_ap": 50.0,
              "reference_ap": 51.0, "ap_drop": 1.0, "budget": 0.5, "over_budget": True}
    monkeypatch.setattr(verify, "verify_build", lambda *a, **k: dict(record))
    opts = BuildOptions(verify=VerifyOptions(scenes["images"], scenes["ann"], max_ap_drop=0.5))
    with pytest.raises(EngineAccuracyError, match="1.00 AP lost, over the 0.50 AP budget") as err:
        chain._verify(engine, tiny_onnx, opts, _Steps(False))
    assert err.value.exit_code == 3
    assert read_sidecar(engine).build["verify"] == record and engine.exists()
    warn = BuildOptions(verify=VerifyOptions(scenes["images"], scenes["ann"]))
    chain._verify(engine, tiny_onnx, warn, _Steps(False))  # no explicit budget: a warning, not an error
