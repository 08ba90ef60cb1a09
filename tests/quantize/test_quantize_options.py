"""The INT8 options objects: defaults, normalisation, and a bad value naming its flag (also
through ``detnet-trt quantize``, before any file is read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detnet_trt.cli import main
from detnet_trt.core.errors import InputError
from detnet_trt.quantize.options import AP_BUDGET, DEFAULT_PERCENTILE, AccuracyCheckOptions, QuantizeOptions


def test_quantize_options_defaults_and_normalisation() -> None:
    o = QuantizeOptions()
    assert (o.method, o.percentile, o.keep_float, o.keep_head_float, o.calib_cache) == (
        "entropy", DEFAULT_PERCENTILE, (), True, None)
    o = QuantizeOptions(keep_float=["/a/*", "re:^/b"], calib_cache="ranges.json")  # type: ignore[arg-type]
    assert o.keep_float == ("/a/*", "re:^/b") and o.calib_cache == Path("ranges.json")
    with pytest.raises(AttributeError):
        o.method = "minmax"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"method": "kl"}, "--method"),
        ({"percentile": 0.0}, "--percentile"),
        ({"percentile": 100.5}, "--percentile"),
        ({"batch": 0}, "batch"),
        ({"min_images": -1}, "min_images"),
    ],
)
def test_quantize_options_bad_value_names_the_flag(kwargs, flag) -> None:
    with pytest.raises(InputError, match=flag):
        QuantizeOptions(**kwargs)


def test_accuracy_check_options_defaults() -> None:
    o = AccuracyCheckOptions(fix_steps=[1, 2])  # type: ignore[arg-type]
    assert (o.split, o.max_images, o.budget, o.max_ap_drop, o.fix_steps) == ("val", None, AP_BUDGET, None, (1, 2))
    assert AccuracyCheckOptions(budget=-101.0, max_ap_drop=-0.5).budget == -101.0  # any budget (tests force one)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"split": ""}, "--split"),
        ({"max_images": 0}, "--val-max-images"),
        ({"sensitivity_images": 0}, "sensitivity_images"),
        ({"fix_steps": ()}, "fix_steps"),
        ({"fix_steps": (0, 1)}, "fix_steps"),
    ],
)
def test_accuracy_check_options_bad_value_names_the_flag(kwargs, flag) -> None:
    with pytest.raises(InputError, match=flag):
        AccuracyCheckOptions(**kwargs)


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--percentile", "0"], "--percentile"), (["--val-data", "d", "--val-max-images", "0"], "--val-max-images")],
)
def test_cli_quantize_bad_value_names_the_flag(tmp_path, capsys, args, flag) -> None:
    code = main(["quantize", str(tmp_path / "missing.onnx"), "--calib", str(tmp_path / "missing.txt"),
                 "-o", str(tmp_path / "q.onnx"), *args])
    assert code == 2
    assert flag in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
