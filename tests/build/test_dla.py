"""``--dla``: what is refused before any work (dynamic batch, FP32, fallback without a core), what
each TensorRT version's DLA runs, and the checks around the build (no DLA layer, layers the DLA
cannot run without GPU fallback asked for). The TensorRT side runs against the real bindings of
every version in ``tests/trt/test_compat.py`` and on a Jetson in the ``gpu`` tests."""

from __future__ import annotations

import pytest

from detnet_trt.build.builder import _check_dla_placement, _check_dla_precision, _Steps
from detnet_trt.build.options import BuildOptions, EngineBuildError
from detnet_trt.cli import main
from detnet_trt.trt import compat


@pytest.mark.parametrize(("version", "want"), [
    ("8.6.2.3", ("fp16",)),  # JetPack 6.0
    ("10.3.0", ("fp16",)),  # JetPack 6.1 / 6.2
    ("10.7.0", ("fp16",)),  # the last 10.x with DLA
    ("10.8.0", ()),
    ("10.16.1.11", ()),
    ("11.4.0.106", ()),  # 11.0 - 11.4.0: no DLA on Linux / JetPack
    ("11.4.1", ("fp16", "int8")),  # JetPack 7.2.2 on AGX Orin: strongly typed, Q/DQ INT8
])
def test_dla_precisions_per_version(version, want) -> None:
    assert compat.TrtApi(version).dla_precisions() == want


def test_int8_on_a_dla_without_qdq_support_is_refused() -> None:
    opts = BuildOptions(precision="int8", dla_core=0, batch=(1, 1, 1))
    with pytest.raises(compat.UnsupportedPrecisionError, match=r"implicit quantization.*not from a Q/DQ ONNX") as err:
        _check_dla_precision(compat.TrtApi("10.3.0"), opts)
    assert "--fp16 --dla" in str(err.value)
    _check_dla_precision(compat.TrtApi("11.4.1"), opts)  # strongly typed DLA takes the Q/DQ ONNX
    _check_dla_precision(compat.TrtApi("8.6.2"), BuildOptions(precision="fp16", dla_core=0, batch=(2, 2, 2)))


def test_a_tensorrt_without_dla_is_refused() -> None:
    with pytest.raises(compat.UnsupportedPrecisionError, match="does not drive the DLA"):
        _check_dla_precision(compat.TrtApi("11.4.0.106"), BuildOptions(dla_core=0, batch=(1, 1, 1)))


def _summary(dla: int, gpu: int) -> dict:
    return {"precision": {"FP16": dla + gpu}, "device": {k: v for k, v in (("DLA", dla), ("GPU", gpu)) if v}}


def test_a_dla_build_with_no_dla_layer_is_an_error_unless_fallback_was_asked(capsys) -> None:
    strict = BuildOptions(dla_core=0, batch=(1, 1, 1))
    with pytest.raises(EngineBuildError, match="the engine has no layer on the DLA"):
        _check_dla_placement(strict, _summary(0, 40), _Steps(False))
    _check_dla_placement(strict, _summary(30, 10), _Steps(False))  # fine: layers on the DLA
    fallback = BuildOptions(dla_core=0, batch=(1, 1, 1), dla_gpu_fallback=True)
    _check_dla_placement(fallback, _summary(0, 40), _Steps(False))
    assert "no layer runs on DLA core 0" in capsys.readouterr().err  # said, not silent
    _check_dla_placement(BuildOptions(), _summary(0, 40), _Steps(False))  # not a DLA build


def test_cli_dla_defaults_to_a_fixed_batch_of_one_and_says_so(tiny_onnx, tmp_path, capsys) -> None:
    from detnet_trt.cli import build_parser
    from detnet_trt.cli.build import build_options

    args = build_parser().parse_args(["build", str(tiny_onnx), "--fp16", "--dla", "0", "-o", str(tmp_path / "m.engine")])
    assert build_options(args).batch == (1, 1, 1)
    assert "--dla builds a fixed batch of 1" in capsys.readouterr().err
    args = build_parser().parse_args(["build", str(tiny_onnx), "--fp16", "-o", str(tmp_path / "m.engine")])
    assert build_options(args).batch == BuildOptions().batch and capsys.readouterr().err == ""


@pytest.mark.parametrize(("extra", "match"), [
    (["--dla", "0", "--batch", "1,2,4"], "the DLA runs fixed shapes only"),
    (["--dla", "0", "--fp32", "--batch", "1"], "the DLA has no FP32 mode"),
    (["--dla-gpu-fallback"], "--dla-gpu-fallback needs --dla CORE"),
])
def test_cli_dla_refusals_are_one_line(extra, match, tiny_onnx, tmp_path, capsys) -> None:
    precision = [] if "--fp32" in extra else ["--fp16"]
    assert main(["build", str(tiny_onnx), *precision, *extra, "-o", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]
    assert list(tmp_path.iterdir()) == []
