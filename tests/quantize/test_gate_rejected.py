"""``--max-ap-drop``: a rejected Q/DQ model is never left at the output path, where a later run would
reuse it (quantize_onnx reuses an output whose provenance matches; build --int8 takes it as is)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from detnet_trt.quantize.calibrate import quantize_onnx
from detnet_trt.quantize.calibset import make_calib_set
from detnet_trt.quantize.gate import AccuracyDropError, quantize_gated
from detnet_trt.quantize.options import AccuracyCheckOptions, QuantizeOptions

REJECT = AccuracyCheckOptions(max_ap_drop=-100.0, budget=100.0)  # no drop is below -100 AP: always rejected
ACCEPT = AccuracyCheckOptions(max_ap_drop=100.0, budget=100.0)


@pytest.fixture(scope="module")
def data(tiny_scenes) -> dict[str, Path]:
    root = tiny_scenes(8, seed=3, splits=("train", "val"))
    calib = make_calib_set(root / "images" / "train", root / "set.txt", num=4, min_images=1)
    return {"root": root, "calib": calib}


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_rejected_model_is_not_written_and_not_reused(tiny_onnx, data, tmp_path, caplog) -> None:
    out = tmp_path / "m.int8.onnx"
    opts = QuantizeOptions(calib_cache=tmp_path / "ranges.json")
    with pytest.raises(AccuracyDropError, match=f"more than --max-ap-drop -100; {out} was not written") as err:
        quantize_gated(tiny_onnx, data["calib"], out, data["root"], opts, REJECT, progress=False)
    assert err.value.exit_code == 3 and err.value.report.int8  # type: ignore[attr-defined]
    assert not out.exists() and _leftovers(tmp_path) == []
    # the later run: nothing to reuse, it quantizes anew (before the fix it logged "reusing it")
    with caplog.at_level(logging.WARNING):
        quantize_onnx(tiny_onnx, data["calib"], out, opts, progress=False)
    assert out.is_file() and "reusing" not in caplog.text


def test_a_passing_model_is_moved_into_place(tiny_onnx, data, tmp_path) -> None:
    out = tmp_path / "m.int8.onnx"
    made, report = quantize_gated(tiny_onnx, data["calib"], out, data["root"], QuantizeOptions(), ACCEPT,
                                  progress=False)
    assert made == out and out.is_file() and report.fp32 and _leftovers(tmp_path) == []


def test_force_and_rejected_leaves_the_previous_file(tiny_onnx, data, tmp_path) -> None:
    out = tmp_path / "m.int8.onnx"
    out.write_bytes(b"the previous file")
    with pytest.raises(AccuracyDropError, match="was not written"):
        quantize_gated(tiny_onnx, data["calib"], out, data["root"], QuantizeOptions(), REJECT, force=True,
                       progress=False)
    assert out.read_bytes() == b"the previous file" and _leftovers(tmp_path) == []


def test_an_existing_output_without_force_is_checked_in_place(tiny_onnx, data, tmp_path) -> None:
    out = quantize_onnx(tiny_onnx, data["calib"], tmp_path / "m.int8.onnx", progress=False)
    before = out.read_bytes()
    with pytest.raises(AccuracyDropError, match="made before, reused"):
        quantize_gated(tiny_onnx, data["calib"], out, data["root"], QuantizeOptions(), REJECT, progress=False)
    assert out.read_bytes() == before  # not ours to delete without --force
