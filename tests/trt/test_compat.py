"""The compatibility module: its choices per TensorRT version, checked as data and against the
real Python bindings of 8.6.1, 10.3.0, 10.16.1.11 and 11.4.0.106.

The bindings come from ``tools/trt_api.py``, cached by ``make trt-bindings`` (part of
``make test``) under ``.cache/trt-api/<version>/runtime``: the real ``tensorrt`` module of that
version over stand-in native libraries, where creating a Builder or Runtime fails as it does on a
machine without a usable GPU. Each version runs in its own interpreter (one ``tensorrt`` per
process). Nothing here builds or runs an engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detnet_trt.trt import compat
from detnet_trt.trt.compat import TrtApi

ROOT = Path(__file__).resolve().parents[2]
BINDINGS = ROOT / ".cache" / "trt-api"
VERSIONS = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")


# --- choices as data -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "major", "fp16", "enqueue", "net_flags", "fp16_flags", "int8_flags"),
    [
        ("8.6.1", 8, "builder-flag", "bindings", ("EXPLICIT_BATCH",), ("FP16",), ("INT8", "FP16")),
        ("8.6.2.3", 8, "builder-flag", "bindings", ("EXPLICIT_BATCH",), ("FP16",), ("INT8", "FP16")),
        ("10.3.0", 10, "builder-flag", "tensor-addresses", (), ("FP16",), ("INT8", "FP16")),
        ("10.16.1.11", 10, "builder-flag", "tensor-addresses", (), ("FP16",), ("INT8", "FP16")),
        ("11.4.0.106", 11, "typed-onnx", "tensor-addresses", ("STRONGLY_TYPED",), (), ()),
    ],
)
def test_choices_per_version(version, major, fp16, enqueue, net_flags, fp16_flags, int8_flags) -> None:
    api = TrtApi(version)
    api.check_supported()
    assert api.major == major
    assert api.fp16_mode == fp16
    assert api.enqueue_mode == enqueue
    assert api.network_flag_names(strongly_typed=False) == net_flags
    assert api.builder_flag_names("fp16") == fp16_flags
    assert api.builder_flag_names("int8") == int8_flags
    assert api.builder_flag_names("fp32") == ()
    assert api.needs_typed_fp16_onnx("fp16") is (major >= 11)
    # INT8 where quantized, FP16 elsewhere: the FP16 flag beside INT8 (8.6 / 10), FP16 types around Q/DQ (11)
    assert api.needs_typed_fp16_onnx("int8") is (major >= 11)
    assert api.builder_flag_names("int8", int8_fallback="fp32") == (() if major >= 11 else ("INT8",))
    assert api.needs_typed_fp16_onnx("int8", int8_fallback="fp32") is False
    assert api.needs_typed_fp16_onnx("fp32") is False
    assert api.uses_fp16("int8") and not api.uses_fp16("int8", "fp32") and not api.uses_fp16("fp32")
    assert api.has_layer_precisions is (major < 11)
    assert api.has_progress_monitor is (major >= 10)


def test_strongly_typed_network_on_10() -> None:
    assert TrtApi("10.3.0").network_flag_names(strongly_typed=True) == ("STRONGLY_TYPED",)


@pytest.mark.parametrize("version", ["7.2.3", "12.0.0"])
def test_unsupported_version_is_an_error(version) -> None:
    with pytest.raises(compat.DetnetError, match="not supported"):
        TrtApi(version).check_supported()


@pytest.mark.parametrize("version", ["8.0.1", "8.2.1.8", "8.5.3.1", "9.3.0"])
def test_versions_before_8_6_are_refused_with_what_to_install(version) -> None:
    """setup.py and the README say TensorRT 8.6 or newer: 8.0-8.5 (and the 9.x previews) are refused."""
    with pytest.raises(compat.DetnetError, match=r"not supported: the oldest supported is 8\.6") as err:
        TrtApi(version).check_supported()
    assert "install TensorRT 8.6 or newer" in str(err.value)


@pytest.mark.parametrize("version", ["8.6.0", "8.6.1.6", "10.0.1", "11.9.0"])
def test_supported_versions_pass_the_gate(version) -> None:
    TrtApi(version).check_supported()


@pytest.mark.parametrize(
    ("text", "want"), [("8.6.1", (8, 6, 1)), ("10.3.0", (10, 3, 0)), ("11.4.0.106", (11, 4, 0)), ("10.0", (10, 0, 0))]
)
def test_parse_version(text, want) -> None:
    assert compat.parse_version(text) == want


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a TensorRT version"):
        compat.parse_version("tensorrt")


@pytest.mark.parametrize(
    ("precision", "cc", "ok"),
    [
        ("fp16", (8, 7), True),  # Jetson Orin
        ("fp16", (7, 2), True),  # Jetson Xavier
        ("fp16", (6, 1), False),  # Pascal consumer cards: slow FP16
        ("fp16", (5, 3), True),  # Jetson Nano
        ("int8", (6, 1), True),
        ("int8", (5, 3), False),  # no DP4A on the Nano
        ("int8", (9, 0), True),
        ("fp32", (5, 0), True),
    ],
)
def test_cc_supports(precision, cc, ok) -> None:
    assert compat.cc_supports(precision, cc) is ok


def test_require_tensorrt_names_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(compat, "have_tensorrt", lambda: False)
    with pytest.raises(compat.TensorRTMissingError, match=r"TensorRT is not installed.*detnet-trt\[tensorrt\]"):
        compat.require_tensorrt("building")


# --- against the real bindings of each version ---------------------------------------------
_PROBE = r"""
import json, sys
import tensorrt as trt
from detnet_trt.trt import compat
from detnet_trt.build.builder import create_builder
from detnet_trt.runtime.backends.tensorrt import create_runtime

api = compat.api_of(trt)
out = {"version": trt.__version__, "major": api.major}

def has(dotted):
    obj = trt
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True

# every version-specific name: present exactly in the majors that use it (IBuilderConfig
# properties are checked on the class: a property is a class attribute in pybind11)
out["names"] = {name: has(name) for name in compat.VERSION_SPECIFIC_NAMES}
out["network_flags"] = [int(getattr(trt.NetworkDefinitionCreationFlag, n)) for n in api.network_flag_names(False)]
out["fp16_flags"] = [str(getattr(trt.BuilderFlag, n)) for n in api.builder_flag_names("fp16")]
out["int8_flags"] = [str(getattr(trt.BuilderFlag, n)) for n in api.builder_flag_names("int8")]
out["int8_fp32_flags"] = [str(getattr(trt.BuilderFlag, n)) for n in api.builder_flag_names("int8", "fp32")]
out["verbosity"] = str(trt.ProfilingVerbosity.DETAILED)
out["inspector_json"] = str(trt.LayerInformationFormat.JSON)
out["float32"] = str(trt.float32)
out["network_flags_value"] = compat.network_flags(api, strongly_typed=api.strongly_typed_only)
out["monitor_base"] = compat.progress_monitor_base() is not None
out["calibrators"] = hasattr(trt, "IInt8EntropyCalibrator2")
logger = trt.Logger(trt.Logger.WARNING)
for what, fn in (("builder", create_builder), ("runtime", create_runtime)):
    try:
        fn(logger)
        out[what] = "created"
    except compat.GpuUnavailableError as err:
        out[what] = str(err)
print("PROBE" + json.dumps(out))
"""


def _bindings(version: str) -> Path:
    path = BINDINGS / version / "runtime"
    if not (path / "tensorrt").is_dir():
        pytest.skip(f"TensorRT {version} bindings not cached: run `make trt-bindings`")
    return path


def _run(version: str, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_bindings(version)), str(ROOT)]))
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module", params=VERSIONS)
def probe(request) -> dict:
    res = _run(request.param, ["-c", _PROBE])
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


def test_version_detection(probe) -> None:
    assert probe["version"].startswith(("8.6.1", "10.3.0", "10.16.1", "11.4.0"))
    assert probe["major"] == int(probe["version"].split(".")[0])


def test_version_specific_names_exist_where_used(probe) -> None:
    major = probe["major"]
    for name, majors in compat.VERSION_SPECIFIC_NAMES.items():
        if major in majors:
            assert probe["names"][name], f"{name} missing in TensorRT {probe['version']}"
    if major >= 11:  # strongly typed only: what 8.6/10 need is gone
        assert not probe["names"]["BuilderFlag.FP16"]
        assert not probe["names"]["BuilderFlag.INT8"]
        assert not probe["calibrators"]
        # no layer precisions to pin: the FP16-typed ONNX keeps the decode FP32 instead
        assert not probe["names"]["ILayer.precision"] and not probe["names"]["ILayer.set_output_type"]
        assert not probe["names"]["BuilderFlag.PREFER_PRECISION_CONSTRAINTS"]
    if major >= 10:
        assert not probe["names"]["IExecutionContext.execute_async_v2"]
    if major < 10:
        assert not probe["names"]["IProgressMonitor"]


def test_flags_resolve_to_real_members(probe) -> None:
    major = probe["major"]
    assert probe["fp16_flags"] == ([] if major >= 11 else ["BuilderFlag.FP16"])
    assert probe["int8_flags"] == ([] if major >= 11 else ["BuilderFlag.INT8", "BuilderFlag.FP16"])
    assert probe["int8_fp32_flags"] == ([] if major >= 11 else ["BuilderFlag.INT8"])
    assert probe["verbosity"] == "ProfilingVerbosity.DETAILED"  # the engine inspector's per-layer detail
    assert probe["inspector_json"] == "LayerInformationFormat.JSON" and probe["float32"] == "DataType.FLOAT"
    want = {8: 1, 10: 0}.get(major)  # 8.6: 1 << EXPLICIT_BATCH (0); 10: none
    if want is not None:
        assert probe["network_flags_value"] == want
    else:
        assert probe["network_flags_value"] == 1 << probe["network_flags"][0]
    assert probe["monitor_base"] is (major >= 10)


def test_no_gpu_is_a_clear_error(probe) -> None:
    for what in ("builder", "runtime"):
        msg = probe[what]
        assert f"TensorRT {probe['version']} could not create a {what.capitalize()}" in msg
        assert "no usable CUDA GPU" in msg


@pytest.mark.parametrize("version", VERSIONS)
def test_build_cli_without_gpu_exits_2_in_one_line(version, tiny_onnx, tmp_path) -> None:
    """``detnet-trt build`` with the real bindings but no GPU: the ONNX steps run, then one line."""
    res = _run(version, ["-m", "detnet_trt", "build", str(tiny_onnx), "--fp16", "--no-progress",
                         "--no-timing-cache", "-o", str(tmp_path / "m.engine")])
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("detnet-trt build: error: TensorRT ") and "could not create a Builder" in lines[-1]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "m.engine").exists()
    # TensorRT 11 has no FP16 flag: the FP16-typed ONNX was made before the builder was needed
    assert (tmp_path / "m.fp16.onnx").exists() is version.startswith("11.")


def test_engine_modules_do_not_import_tensorrt(tmp_path) -> None:
    """Importing the package, the engine modules and the CLI leaves tensorrt and pycuda unimported."""
    code = ("import sys, detnet_trt, detnet_trt.build.chain, detnet_trt.build.builder, detnet_trt.runtime.backends.tensorrt, "
            "detnet_trt.export.efficient_nms, detnet_trt.trt.plugins, detnet_trt.trt.cuda, "
            "detnet_trt.cli; detnet_trt.cli.build_parser(); "
            "print(sorted(m for m in ('tensorrt', 'pycuda') if m in sys.modules))")
    res = _run("10.3.0", ["-c", code])
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def qdq_onnx(tiny_onnx, tmp_path_factory) -> Path:
    import cv2
    import numpy as np

    from detnet_trt.quantize.calibrate import quantize_onnx
    from detnet_trt.quantize.calibset import make_calib_set

    d = tmp_path_factory.mktemp("qdq")
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(d / f"{i}.png"), cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (128, 128)))
    return quantize_onnx(tiny_onnx, make_calib_set(d, d / "set.txt", num=2, min_images=1), d / "m.int8.onnx",
                         progress=False)


@pytest.mark.parametrize(("version", "fallback", "typed"),
                         [("10.3.0", None, False), ("11.4.0.106", None, True), ("11.4.0.106", "fp32", False)])
def test_int8_build_makes_the_fp16_typed_qdq_onnx_on_11_only(version, fallback, typed, qdq_onnx, tmp_path) -> None:
    """``--int8`` on TensorRT 11 (strongly typed): FP16 around the INT8 layers is an FP16-typed Q/DQ
    ONNX (opset 19), made before the builder is needed; 10.x sets the FP16 flag instead, and
    ``--int8-fallback fp32`` keeps the Q/DQ ONNX as it is."""
    extra = ["--int8-fallback", fallback] if fallback else []
    res = _run(version, ["-m", "detnet_trt", "build", str(qdq_onnx), "--int8", *extra, "--no-progress",
                         "--no-timing-cache", "-o", str(tmp_path / "m.engine")])
    assert res.returncode == 2, res.stderr[-2000:]
    assert "could not create a Builder" in res.stderr.splitlines()[-1] and "Traceback" not in res.stderr
    typed_onnx = tmp_path / "m.int8.fp16.onnx"
    assert typed_onnx.exists() is typed
    if typed:
        import onnx

        assert [o.version for o in onnx.load(str(typed_onnx)).opset_import] == [19]


_DLA_PROBE = r"""
import json
import tensorrt as trt
from detnet_trt.build.builder import configure_dla
from detnet_trt.build.options import BuildOptions, EngineBuildError

class Layer:
    def __init__(self, kind, dla):
        self.type, self.dla = kind, dla

class Network:
    def __init__(self, layers):
        self.layers = layers
        self.num_layers = len(layers)
    def get_layer(self, i):
        return self.layers[i]

class Config:
    flags = []
    default_device_type = None
    DLA_core = None
    def set_flag(self, flag):
        self.flags.append(flag)
    def can_run_on_DLA(self, layer):
        return layer.dla

out = {}
net = Network([Layer(trt.LayerType.CONVOLUTION, True), Layer(trt.LayerType.TOPK, False)])
for name, opts in (("strict", BuildOptions(dla_core=1, batch=(1, 1, 1))),
                   ("fallback", BuildOptions(dla_core=1, batch=(1, 1, 1), dla_gpu_fallback=True))):
    config = Config()
    config.flags = []
    try:
        out[name] = configure_dla(net, config, opts)
    except EngineBuildError as err:
        out[name] = str(err)
    out[name + "_flags"] = [str(f) for f in config.flags]
    out[name + "_device"] = str(config.default_device_type)
    out[name + "_core"] = config.DLA_core
try:
    configure_dla(Network([Layer(trt.LayerType.TOPK, False)]), Config(), BuildOptions(dla_core=0, batch=(1, 1, 1),
                  dla_gpu_fallback=True))
except EngineBuildError as err:
    out["none"] = str(err)
print("PROBE" + json.dumps(out))
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_configure_dla_with_the_real_enums(version) -> None:
    """configure_dla against each version's real DeviceType / BuilderFlag / LayerType (a stand-in
    network and config: no GPU here): DLA as default device, GPU fallback only when asked, and the
    two refusals (a layer the DLA cannot run without fallback; no layer for the DLA at all)."""
    res = _run(version, ["-c", _DLA_PROBE])
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("PROBE"))[len("PROBE"):])
    assert "1 of 2 layers cannot run on the DLA (TOPK)" in out["strict"] and "--dla-gpu-fallback" in out["strict"]
    assert out["strict_flags"] == [] and out["strict_device"] == "DeviceType.DLA" and out["strict_core"] == 1
    assert out["fallback"] == {"network_layers": 2, "dla_capable": 1}
    assert out["fallback_flags"] == ["BuilderFlag.GPU_FALLBACK"]
    assert "none of the network's 1 layers can run on the DLA" in out["none"]
