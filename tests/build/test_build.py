"""The build chain up to TensorRT, on CPU: options, the INT8/calibration rules, and what
``detnet-trt build`` does without TensorRT (export and quantize for real, keep the ONNX, one
line, exit 2). The TensorRT steps themselves are covered by the real-bindings tests in
``test_engine_compat.py`` (no GPU) and the ``gpu`` tests in ``test_engine_gpu.py``."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from detnet_trt.build.builder import default_timing_cache
from detnet_trt.build.chain import build_engine, current_tag
from detnet_trt.build.options import BuildOptions, graph_nms, parse_batch
from detnet_trt.cli import main
from detnet_trt.core.config import EFFICIENT_NMS, PostprocessConfig
from detnet_trt.core.errors import InputError, OutputExistsError
from detnet_trt.trt import compat

no_tensorrt = pytest.mark.skipif(compat.have_tensorrt(), reason="TensorRT is installed: these test its absence")


@pytest.fixture(scope="module")
def calib_set(tmp_path_factory) -> Path:
    from detnet_trt.quantize.calibset import make_calib_set

    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i in range(6):
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(d / f"{i}.png"), cv2.resize(small, (96 + 8 * i, 80), interpolation=cv2.INTER_CUBIC))
    return make_calib_set(d, d / "set.txt", num=6, min_images=1)


@pytest.fixture(scope="module")
def qdq_onnx(tiny_onnx, calib_set, tmp_path_factory) -> Path:
    from detnet_trt.quantize.calibrate import quantize_onnx

    return quantize_onnx(tiny_onnx, calib_set, tmp_path_factory.mktemp("qdq") / "tiny.int8.onnx", progress=False)


# --- options -------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [("1,4,8", (1, 4, 8)), ("8", (8, 8, 8)), (" 2, 2 ,4", (2, 2, 4))])
def test_parse_batch(text, want) -> None:
    assert parse_batch(text) == want


@pytest.mark.parametrize("text", ["1,4", "a,b,c", "1,2,3,4"])
def test_parse_batch_rejects(text) -> None:
    with pytest.raises(InputError, match="--batch"):
        parse_batch(text)


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"batch": (4, 2, 8)}, r"1 <= min <= opt <= max"),
        ({"batch": (0, 1, 1)}, r"1 <= min"),
        ({"precision": "fp32", "dla_core": 0, "batch": (1, 1, 1)}, "the DLA has no FP32 mode"),
        ({"dla_core": 0, "batch": (1, 1, 8)}, r"the DLA runs fixed shapes only \(min = opt = max\)"),
        ({"dla_gpu_fallback": True}, "--dla-gpu-fallback needs --dla CORE"),
        ({"precision": "bf16"}, "unknown precision"),
        ({"workspace_mib": 1}, "too small"),
        ({"nms": "onnx"}, "--nms"),
        ({"precision": "int8", "int8_fallback": "bf16"}, "expected fp16 or fp32"),
        ({"precision": "fp16", "int8_fallback": "fp32"}, "applies to --int8 builds only"),
    ],
)
def test_invalid_options(opts, match) -> None:
    with pytest.raises(InputError, match=match):
        BuildOptions(**opts).validate()


@pytest.mark.parametrize(
    ("opts", "flag"),
    [
        ({"calib_method": "kl"}, "--calib-method"),
        ({"batch": (2, 1, 1)}, "--batch"),
        ({"workspace_mib": 8}, "--workspace"),
        ({"dla_core": -1}, "--dla"),
        ({"nms": "onnx"}, "--nms"),
        ({"layout": "chw"}, "--layout"),
        ({"topk": 0}, "--topk"),
        ({"plugins": ("/nonexistent/libplugin.so",)}, "--plugin"),
        ({"precision": "bf16"}, "--fp32, --fp16 or --int8"),
    ],
)
def test_bad_option_names_the_flag(opts, flag) -> None:
    with pytest.raises(InputError, match=re.escape(flag)):
        BuildOptions(**opts)


@pytest.mark.parametrize(
    ("conf", "iou", "max_det", "flag"),
    [(2.0, 0.5, 100, "--nms-conf"), (0.001, 0.0, 100, "--nms-iou"), (0.001, 0.5, 0, "--max-det")],
)
def test_graph_nms_names_build_flags(conf, iou, max_det, flag) -> None:
    with pytest.raises(InputError, match=flag) as err:
        graph_nms(conf, iou, max_det)
    assert "--conf" not in str(err.value) and "--iou" not in str(err.value)
    assert graph_nms(0.01, 0.6, 20) == PostprocessConfig(conf=0.01, iou=0.6, max_det=20)


def test_options_are_normalised_and_default_post_is_efficient_nms(tmp_path) -> None:
    lib = tmp_path / "libx.so"
    lib.write_bytes(b"")
    o = BuildOptions(calib=str(tmp_path / "set.txt"), timing_cache=str(tmp_path / "t.cache"),  # type: ignore[arg-type]
                     plugins=[str(lib)], batch=[1, 2, 4])  # type: ignore[arg-type]
    assert o.calib == tmp_path / "set.txt" and o.timing_cache == tmp_path / "t.cache"
    assert o.plugins == (lib,) and o.batch == (1, 2, 4) and BuildOptions().post == EFFICIENT_NMS


def test_sidecar_record_keeps_the_keys_and_values_of_before(tmp_path) -> None:
    """The sidecar's "build" entries from the options: the flat nms_conf / nms_iou / max_det of
    before (not a nested "post"), paths as strings, batch and plugins as lists."""
    lib = tmp_path / "libx.so"
    lib.write_bytes(b"")
    o = BuildOptions(precision="int8", calib=tmp_path / "set.txt", batch=(1, 4, 8), nms="efficient",
                     post=PostprocessConfig(conf=0.01, iou=0.6, max_det=50), plugins=(lib,), topk=200,
                     verbose=True, force=True, progress=False, extra={"note": "x"})
    assert o.record() == {
        "precision": "int8", "calib": str(tmp_path / "set.txt"), "calib_method": "entropy", "int8_fallback": "fp16",
        "batch": [1, 4, 8],
        "workspace_mib": 2048, "dla_core": None, "dla_gpu_fallback": False, "timing_cache": None, "no_timing_cache": False,
        "nms": "efficient", "nms_conf": 0.01, "nms_iou": 0.6, "max_det": 50, "plugins": [str(lib)],
        "layout": "nchw", "topk": 200,
    }
    assert list(BuildOptions().record()) == [
        "precision", "calib", "calib_method", "int8_fallback", "batch", "workspace_mib", "dla_core", "dla_gpu_fallback", "timing_cache",
        "no_timing_cache", "nms", "nms_conf", "nms_iou", "max_det", "plugins", "layout", "topk",
    ]


def test_cli_build_bad_value_names_the_flag(tiny_onnx, tmp_path, capsys) -> None:
    for args, flag in ((["--nms-conf", "2"], "--nms-conf"), (["--workspace", "1"], "--workspace")):
        assert main(["build", str(tiny_onnx), "--fp16", "-o", str(tmp_path / "m.engine"), *args]) == 2
        assert flag in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_default_timing_cache_is_per_version_and_gpu(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = default_timing_cache("10.3.0", "Orin (nvgpu)", (8, 7))
    assert a == tmp_path / "detnet-trt" / "timing" / "trt-10.3.0-orin-nvgpu-sm87.cache"
    assert default_timing_cache("10.3.0", "NVIDIA H100 80GB HBM3", (9, 0)) != a
    assert default_timing_cache("11.4.0.106", "Orin (nvgpu)", (8, 7)) != a


def test_current_tag() -> None:
    assert current_tag(Path("m.int8.onnx")) == "int8."
    assert current_tag(Path("m.fp16.onnx")) == "fp16."
    assert current_tag(Path("m.onnx")) == ""
    assert current_tag(Path("m.int8.fp16.onnx")) == "int8.fp16."  # INT8 with FP16 around it (TensorRT 11)
    assert current_tag(Path("my.model.int8.onnx")) == "int8."


def test_cli_int8_fallback_is_for_int8_only(tiny_onnx, tmp_path, capsys) -> None:
    assert main(["build", str(tiny_onnx), "--fp16", "--int8-fallback", "fp32", "-o", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--int8-fallback fp32 applies to --int8 builds only" in err[0]
    assert main(["build", str(tiny_onnx), "--int8", "--int8-fallback", "bf16", "-o", str(tmp_path / "m.engine")]) == 2
    assert "--int8-fallback" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- the INT8 rules ------------------------------------------------------------------------
def test_int8_from_checkpoint_needs_calib(tiny_checkpoint, tmp_path) -> None:
    with pytest.raises(InputError, match=r"--int8 from a checkpoint \(detnet_tiny.pt\) needs --calib"):
        build_engine(tiny_checkpoint, tmp_path / "m.engine", BuildOptions(precision="int8", progress=False))
    assert list(tmp_path.iterdir()) == []  # failed before exporting anything


def test_int8_from_fp32_onnx_needs_calib(tiny_onnx, tmp_path) -> None:
    with pytest.raises(InputError, match=r"--int8 from an FP32 ONNX .* needs --calib SET"):
        build_engine(tiny_onnx, tmp_path / "m.engine", BuildOptions(precision="int8", progress=False))


def test_qdq_onnx_is_int8_only(qdq_onnx, tmp_path) -> None:
    with pytest.raises(InputError, match="quantized .*build it with --int8"):
        build_engine(qdq_onnx, tmp_path / "m.engine", BuildOptions(precision="fp16", progress=False))


def test_engine_output_must_not_be_onnx(tiny_onnx, tmp_path) -> None:
    with pytest.raises(InputError, match="must not end in .onnx"):
        build_engine(tiny_onnx, tmp_path / "m.onnx", BuildOptions(precision="fp16", progress=False))


def test_existing_engine_needs_force(tiny_onnx, tmp_path) -> None:
    (tmp_path / "m.engine").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--force"):
        build_engine(tiny_onnx, tmp_path / "m.engine", BuildOptions(precision="fp16", progress=False))
    assert (tmp_path / "m.engine").read_bytes() == b"old"


# --- without TensorRT: the ONNX steps run, then one line and exit 2 ------------------------
def _last_line(capsys) -> tuple[str, str]:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1], err


@no_tensorrt
def test_build_int8_without_tensorrt_keeps_the_qdq_onnx(tiny_onnx, calib_set, tmp_path, capsys) -> None:
    from detnet_trt.quantize.calibrate import is_qdq_onnx

    out = tmp_path / "m.engine"
    code = main(["build", str(tiny_onnx), "--int8", "--calib", str(calib_set), "-o", str(out), "--no-progress"])
    assert code == 2
    last, err = _last_line(capsys)
    assert last.startswith("detnet-trt build: error: TensorRT is not installed; kept ")
    assert "m.int8.onnx (Q/DQ INT8)" in last and "detnet-trt[tensorrt]" in last and "JetPack" in last
    assert "Traceback" not in err
    assert is_qdq_onnx(tmp_path / "m.int8.onnx")
    assert not out.exists()


@no_tensorrt
def test_build_from_qdq_onnx_without_tensorrt_needs_no_calib(qdq_onnx, tmp_path, capsys) -> None:
    code = main(["build", str(qdq_onnx), "--int8", "-o", str(tmp_path / "m.engine"), "--no-progress"])
    assert code == 2
    last, _ = _last_line(capsys)
    assert f"kept {qdq_onnx} (Q/DQ INT8)" in last
    assert list(tmp_path.iterdir()) == []  # nothing to derive from an already quantized ONNX


@no_tensorrt
def test_qdq_onnx_from_another_calibration_set_is_refused(qdq_onnx, tmp_path) -> None:
    from detnet_trt.core.errors import IncompatibleError

    other = tmp_path / "other.txt"
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), np.full((64, 64, 3), 7, np.uint8))
    from detnet_trt.quantize.calibset import make_calib_set

    make_calib_set(d, other, num=1, min_images=1)
    with pytest.raises(IncompatibleError):
        build_engine(qdq_onnx, tmp_path / "m.engine", BuildOptions(precision="int8", calib=other, progress=False))


@no_tensorrt
def test_build_from_checkpoint_without_tensorrt_exports_first(tiny_checkpoint, tmp_path, capsys) -> None:
    from detnet_trt.core.onnx_meta import read_onnx_meta

    code = main(["build", str(tiny_checkpoint), "--fp16", "--nms", "efficient", "--max-det", "50",
                 "-o", str(tmp_path / "m.engine")])
    assert code == 2
    last, err = _last_line(capsys)
    assert "[1] export detnet_tiny.pt -> ONNX" in err  # progress lines, one per step
    assert "[2] add EfficientNMS_TRT" in err
    assert "TensorRT is not installed; kept " in last and "m.nms.onnx" in last
    assert (tmp_path / "m.onnx").is_file()
    meta = read_onnx_meta(tmp_path / "m.nms.onnx")
    assert meta.nms == "efficient" and meta.max_det == 50


def test_target_command_repeats_every_engine_option(tmp_path) -> None:
    import shlex

    from detnet_trt.build.chain import target_command

    lib = tmp_path / "lib my.so"
    lib.write_bytes(b"")
    opts = BuildOptions(precision="int8", int8_fallback="fp32", calib=tmp_path / "set.txt", batch=(1, 1, 1),
                        workspace_mib=4096, dla_core=1, dla_gpu_fallback=True, timing_cache=tmp_path / "t.cache",
                        plugins=(lib,), nms="efficient", verbose=True, force=True, progress=False)
    cmd = target_command(tmp_path / "m.int8.nms.onnx", tmp_path / "m.engine", opts)
    assert cmd == ["detnet-trt", "build", str(tmp_path / "m.int8.nms.onnx"), "--int8", "--int8-fallback", "fp32",
                   "--batch", "1", "--workspace", "4096", "--dla", "1", "--dla-gpu-fallback",
                   "--timing-cache", str(tmp_path / "t.cache"), "--plugin", str(lib), "--verbose", "-o", "m.engine"]
    # what the kept ONNX already holds (quantization from --calib, the NMS surgery) is not repeated
    assert "--calib" not in cmd and "--nms" not in cmd
    # and the command parses back to the same engine options
    from detnet_trt.cli import build_parser
    from detnet_trt.cli.build import build_options

    back = build_options(build_parser().parse_args(shlex.split(shlex.join(cmd))[1:]))
    for name in ("precision", "int8_fallback", "batch", "workspace_mib", "dla_core", "dla_gpu_fallback",
                 "timing_cache", "plugins", "verbose"):
        assert getattr(back, name) == getattr(opts, name), name
    dyn = target_command(tmp_path / "m.onnx", tmp_path / "m.engine", BuildOptions(batch=(1, 4, 8), no_timing_cache=True))
    assert dyn[3:] == ["--fp16", "--batch", "1,4,8", "--no-timing-cache", "-o", "m.engine"]
    plain = target_command(tmp_path / "m.onnx", tmp_path / "m.engine", BuildOptions())
    assert plain[3:] == ["--fp16", "-o", "m.engine"]


@no_tensorrt
def test_without_tensorrt_the_hint_repeats_the_options(tiny_onnx, tmp_path, capsys) -> None:
    code = main(["build", str(tiny_onnx), "--fp16", "--batch", "2,4,8", "--workspace", "1024", "--no-timing-cache",
                 "-o", str(tmp_path / "m.engine"), "--no-progress"])
    assert code == 2
    last, _ = _last_line(capsys)
    assert f"`detnet-trt build {tiny_onnx} --fp16 --batch 2,4,8 --workspace 1024 --no-timing-cache -o m.engine`" in last
