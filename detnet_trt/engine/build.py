"""Build a TensorRT engine from a checkpoint or an ONNX file: a chain of small, checked steps.

    (export)      checkpoint -> FP32 ONNX (host NMS)                     no TensorRT needed
    (quantize)    --int8: FP32 ONNX + calibration set -> Q/DQ ONNX        no TensorRT needed
    (fp16 types)  --fp16 on TensorRT 11: FP32 ONNX -> FP16-typed ONNX
    (nms)         --nms efficient: append EfficientNMS_TRT (graph surgery)
    parse         TensorRT's ONNX parser; every parser error is printed
    configure     workspace limit, precision, optimisation profile for the dynamic batch,
                  DLA core with GPU fallback, timing cache (reused across builds)
    build         serialized network, with progress
    save          engine written atomically + sidecar JSON (see :mod:`.sidecar`)

Without TensorRT the ONNX steps still run and their files are kept (a Q/DQ ONNX built here can
be compiled on the Jetson); the chain then stops with one line saying TensorRT is missing.
``tensorrt`` is imported lazily, only inside the functions that need it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import DetnetError, InputError, ModelFileError
from ..fileio import atomic_write_bytes, check_writable, sha256_bytes, sha256_file
from ..meta import INPUT_NAME, PRECISIONS, ModelMeta
from . import compat
from .sidecar import EngineInfo, sidecar_path, write_sidecar

if TYPE_CHECKING:
    import tensorrt as trt

CHECKPOINT_SUFFIXES = (".pt", ".pth")


class EngineBuildError(DetnetError):
    """TensorRT refused the model (parser errors, unsupported layer, out of memory, ...)."""


@dataclass
class BuildOptions:
    """Options of :func:`build_engine` (all recorded in the sidecar)."""

    precision: str = "fp16"
    calib: Path | None = None
    calib_method: str = "entropy"
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max of the dynamic batch
    workspace_mib: int = 2048
    dla_core: int | None = None
    timing_cache: Path | None = None  # None: the default per-user cache; see no_timing_cache
    no_timing_cache: bool = False
    nms: str = "host"  # "host" (post-processing on the host) or "efficient" (EfficientNMS_TRT)
    nms_conf: float = 0.001
    nms_iou: float = 0.5
    max_det: int = 100
    plugins: tuple[Path, ...] = ()
    layout: str = "nchw"  # export options, when starting from a checkpoint
    topk: int | None = None
    verbose: bool = False
    force: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise InputError(
                f"--batch {lo},{opt},{hi}: expected 1 <= min <= opt <= max", "for example --batch 1,4,8"
            )
        if self.workspace_mib < 16:
            raise InputError(f"--workspace {self.workspace_mib} MiB is too small", "use at least 16 (MiB)")
        if self.nms not in ("host", "efficient"):
            raise InputError(f"--nms {self.nms!r}: expected 'host' or 'efficient'")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise InputError(f"--dla {self.dla_core}: a DLA core index is 0 or more")
            if self.precision == "fp32":
                raise InputError("--dla needs --fp16 or --int8: the DLA has no FP32 mode")
        for lib in self.plugins:  # fail before the long steps, not after them
            if not Path(lib).expanduser().is_file():
                raise InputError(f"plugin library {lib} not found", "check the --plugin path (a .so file)")


def parse_batch(text: str) -> tuple[int, int, int]:
    """``"1,4,8"`` -> (1, 4, 8) (min, opt, max); one number ``"8"`` -> (8, 8, 8): a fixed batch."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise InputError(f"--batch {text!r}: expected MIN,OPT,MAX integers (or one integer)") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise InputError(f"--batch {text!r}: expected MIN,OPT,MAX, e.g. 1,4,8")
    return parts[0], parts[1], parts[2]


# --- the chain -----------------------------------------------------------------------------
def build_engine(
    onnx_or_ckpt: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    precision: str,
    calib: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Path:
    """Build ``output`` (a TensorRT engine) and its sidecar from a checkpoint or ONNX file.

    ``precision``: ``fp32``, ``fp16`` or ``int8``. INT8 needs ``calib`` (a calibration set file)
    unless the ONNX is already quantized (Q/DQ). See :class:`BuildOptions` for the other options.
    Raises :class:`~detnet_trt.engine.compat.TensorRTMissingError` after the ONNX steps when
    TensorRT is not installed (the ONNX files are kept).
    """
    opts = BuildOptions(precision=precision, calib=Path(calib) if calib else None, **options)
    opts.plugins = tuple(Path(p) for p in opts.plugins)
    opts.validate()
    src = Path(onnx_or_ckpt)
    if not src.is_file():
        raise ModelFileError(f"{src}: no such file", "pass a checkpoint (.pt) or an ONNX file")
    out = check_writable(output, opts.force)
    if out.suffix.lower() == ".onnx":
        raise InputError(f"-o {out}: the engine file must not end in .onnx", "use .engine or .plan")
    check_writable(sidecar_path(out), opts.force)
    log = _Steps(opts.progress)

    api = _installed_api()
    onnx_path, calib_sha = prepare_onnx(src, out, opts, api, log)
    if api is None:
        kept = f"kept {onnx_path}" + (" (Q/DQ INT8)" if opts.precision == "int8" else "")
        raise compat.TensorRTMissingError(
            f"TensorRT is not installed; {kept}: build the engine on the target with "
            f"`detnet-trt build {onnx_path} --{opts.precision} -o {out.name}`",
            compat.INSTALL_HINT,
        )
    return _build_with_tensorrt(api, src, onnx_path, out, opts, calib_sha, log)


def prepare_onnx(
    src: Path, out: Path, opts: BuildOptions, api: compat.TrtApi | None, log: _Steps
) -> tuple[Path, str]:
    """The ONNX steps (export, quantize, FP16 types, NMS plugin); returns (ONNX to parse, calib sha256)."""
    from ..quantize import is_qdq_onnx, read_quant_provenance

    base = out.with_suffix("")
    is_ckpt = src.suffix.lower() in CHECKPOINT_SUFFIXES
    qdq = (not is_ckpt) and is_qdq_onnx(src)
    if opts.precision == "int8" and not qdq and opts.calib is None:
        kind = "a checkpoint" if is_ckpt else "an FP32 ONNX"
        raise InputError(
            f"--int8 from {kind} ({src.name}) needs --calib SET: INT8 scales come from calibration images",
            "make a set with `detnet-trt calib-set`, or pass an already quantized (Q/DQ) ONNX",
        )
    if qdq and opts.precision != "int8":
        raise InputError(f"{src.name} is a quantized (Q/DQ) ONNX", "build it with --int8")
    if qdq and opts.calib is not None:
        from ..quantize import check_quantized

        check_quantized(src, calib=opts.calib)  # refuses a Q/DQ ONNX calibrated on another set

    current = src
    if is_ckpt:
        from ..export import export_onnx

        log.step(f"export {src.name} -> ONNX")
        current = export_onnx(src, base.with_name(base.name + ".onnx"), layout=opts.layout, topk=opts.topk,
                              nms="host", force=opts.force)
    calib_sha = ""
    if opts.precision == "int8" and not qdq and opts.calib is not None:
        from ..calibset import read_calib_set
        from ..quantize import quantize_onnx

        cs = read_calib_set(opts.calib)
        calib_sha = cs.sha256
        log.step(f"quantize {current.name} with {len(cs.files)} calibration images ({opts.calib_method})")
        current = quantize_onnx(current, cs, _derived(base, "int8"), method=opts.calib_method,
                                force=opts.force, progress=opts.progress)
    elif qdq:
        prov = read_quant_provenance(src) or {}
        calib_sha = str(prov.get("calib_set_sha256", ""))
    if api is not None and api.needs_typed_fp16_onnx(opts.precision):
        from .fp16 import convert_to_fp16, is_fp16_onnx

        if not is_fp16_onnx(current):
            log.step(f"FP16-typed ONNX for TensorRT {api.version} (strongly typed)")
            current = convert_to_fp16(current, _derived(base, "fp16"), force=opts.force)
    if opts.nms == "efficient":
        from ..plugins import add_efficient_nms

        log.step(f"add EfficientNMS_TRT (max_det={opts.max_det}, iou={opts.nms_iou})")
        current = add_efficient_nms(current, _derived(base, current_tag(current) + "nms"),
                                    max_det=opts.max_det, conf=opts.nms_conf, iou=opts.nms_iou, force=opts.force)
    return Path(current), calib_sha


def current_tag(path: Path) -> str:
    """``model.int8.onnx`` -> ``"int8."`` (the precision tag of a derived file), else ``""``."""
    parts = path.name.split(".")
    return f"{parts[-2]}." if len(parts) >= 3 and parts[-2] in ("int8", "fp16") else ""


def _derived(base: Path, tag: str) -> Path:
    return base.with_name(f"{base.name}.{tag}.onnx")


def _installed_api() -> compat.TrtApi | None:
    if not compat.have_tensorrt():
        return None
    compat.require_tensorrt("the engine build")
    import tensorrt as trt

    return compat.api_of(trt)


def _onnx_meta(path: Path) -> ModelMeta:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props})
    if meta is None:
        raise ModelFileError(f"{path}: not a detnet_trt ONNX (no metadata)", "export it with `detnet-trt export`")
    return meta


# --- TensorRT steps ------------------------------------------------------------------------
def _build_with_tensorrt(
    api: compat.TrtApi, src: Path, onnx_path: Path, out: Path, opts: BuildOptions, calib_sha: str, log: _Steps
) -> Path:
    import tensorrt as trt

    from ..plugins import load_plugin_libraries
    from .cuda import device_info

    meta = _onnx_meta(onnx_path).with_updates(precision=opts.precision)
    logger = trt.Logger(trt.Logger.VERBOSE if opts.verbose else trt.Logger.WARNING)
    load_plugin_libraries(opts.plugins)
    plugins_ok = compat.init_plugins(logger)
    builder = create_builder(logger)
    if not plugins_ok and opts.nms == "efficient":
        raise EngineBuildError(
            "TensorRT's bundled plugins (EfficientNMS_TRT) could not be registered",
            "install libnvinfer-plugin (JetPack ships it; x86: the tensorrt wheel), or build with --nms host",
        )
    gpu_name, cc = device_info(0)  # TensorRT builds on the current device: pick it with CUDA_VISIBLE_DEVICES
    _check_precision(api, builder, opts, gpu_name, cc)

    log.step(f"parse {onnx_path.name} (TensorRT {api.version}, {gpu_name}, sm {cc[0]}{cc[1]})")
    network = builder.create_network(compat.network_flags(api, strongly_typed=api.strongly_typed_only))
    parser = trt.OnnxParser(network, logger)
    parse_onnx(parser, onnx_path)
    _check_network(network, meta, onnx_path)

    config = builder.create_builder_config()
    precision_flags = configure(api, builder, network, config, meta, opts)
    cache_path = None if opts.no_timing_cache else (opts.timing_cache or default_timing_cache(api.version, gpu_name, cc))
    if cache_path is not None:
        load_timing_cache(config, cache_path)

    monitor = _attach_progress(api, config, opts.progress)
    log.step(f"build {opts.precision.upper()} engine, batch {opts.batch[0]}..{opts.batch[2]} (this takes minutes)")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if monitor is not None:
        monitor.close()
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT could not build an engine from {onnx_path.name} (see TensorRT's messages above)",
            "rerun with --verbose; a larger --workspace helps with out-of-memory tactics",
        )
    data = bytes(memoryview(serialized))
    seconds = time.perf_counter() - t0
    if cache_path is not None:
        save_timing_cache(config, cache_path)

    log.step(f"save {out.name} ({len(data) / 2**20:.1f} MiB, built in {seconds:.0f} s)")
    atomic_write_bytes(out, data, force=True)
    info = EngineInfo(
        meta=meta,
        tensorrt_version=api.version,
        gpu_name=gpu_name,
        compute_capability=cc,
        onnx_sha256=sha256_file(onnx_path),
        calib_sha256=calib_sha,
        engine_sha256=sha256_bytes(data),
        build={
            **{k: v for k, v in asdict(opts).items() if k not in ("force", "progress", "extra", "verbose")},
            "calib": str(opts.calib) if opts.calib else None,
            "timing_cache": str(cache_path) if cache_path else None,
            "plugins": [str(p) for p in opts.plugins],
            "batch": list(opts.batch),
            "source": str(src),
            "source_sha256": sha256_file(src),
            "onnx": str(onnx_path),
            "builder_flags": precision_flags,
            "strongly_typed": api.strongly_typed_only,
            "fp16_mode": api.fp16_mode if opts.precision == "fp16" else None,
            "build_seconds": round(seconds, 1),
            "detnet_trt_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **opts.extra,
        },
    )
    write_sidecar(out, info, force=True)
    return out


def create_builder(logger: trt.ILogger) -> trt.Builder:
    """``trt.Builder``; a :class:`~.compat.GpuUnavailableError` when TensorRT cannot use a GPU."""
    import tensorrt as trt

    try:
        return trt.Builder(logger)
    except (TypeError, RuntimeError) as err:  # pybind11: "factory function returned nullptr"
        raise compat.GpuUnavailableError(
            f"TensorRT {trt.__version__} could not create a Builder: no usable CUDA GPU ({err})",
            "check the driver and device (nvidia-smi, or tegrastats on a Jetson); "
            "without a GPU, keep the ONNX file and build on the target",
        ) from None


def _check_precision(
    api: compat.TrtApi, builder: trt.Builder, opts: BuildOptions, gpu_name: str, cc: tuple[int, int]
) -> None:
    if opts.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if opts.dla_core >= cores:
            raise compat.UnsupportedPrecisionError(
                f"--dla {opts.dla_core}: {gpu_name} has {cores} DLA core(s)",
                "DLA cores exist on Jetson AGX/NX Orin and Xavier; drop --dla elsewhere",
            )
        return  # the DLA runs FP16 and INT8 (checked in validate); other layers fall back to the GPU
    if not compat.platform_supports(api, builder, opts.precision, cc):
        raise compat.UnsupportedPrecisionError(
            f"{gpu_name} (compute capability {cc[0]}.{cc[1]}) has no fast {opts.precision.upper()} "
            f"support in TensorRT {api.version}",
            "build with --fp32 (or --fp16 where INT8 is missing); nothing was built",
        )


def parse_onnx(parser: trt.OnnxParser, onnx_path: Path) -> None:
    """Parse the ONNX file; print every parser error and raise :class:`EngineBuildError` on failure."""
    ok = parser.parse_from_file(str(onnx_path))
    errors = [format_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    for line in errors:
        print(f"TensorRT ONNX parser: {line}", file=sys.stderr)
    if not ok or errors:
        first = errors[0] if errors else "no message"
        raise EngineBuildError(
            f"TensorRT could not parse {onnx_path.name}: {len(errors)} error(s), first: {first}",
            "unsupported ops need a plugin (--plugin) or another export (--opset)",
        )


def format_parser_error(err: trt.ParserError) -> str:
    return f"{err.code().name} at node {err.node()}: {err.desc()} ({err.func()} {err.file()}:{err.line()})"


def _check_network(network: trt.INetworkDefinition, meta: ModelMeta, onnx_path: Path) -> None:
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != [INPUT_NAME]:
        raise EngineBuildError(f"{onnx_path.name}: inputs {names}, expected [{INPUT_NAME!r}]")
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if sorted(outputs) != sorted(meta.output_names):
        raise EngineBuildError(f"{onnx_path.name}: outputs {outputs}, expected {list(meta.output_names)}")


def configure(
    api: compat.TrtApi,
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    meta: ModelMeta,
    opts: BuildOptions,
) -> list[str]:
    """Workspace, precision flags, batch profile and DLA; returns the builder flags set."""
    import tensorrt as trt

    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mib) << 20)
    flags = compat.set_precision_flags(api, config, opts.precision)
    profile = builder.create_optimization_profile()
    lo, opt, hi = opts.batch
    profile.set_shape(INPUT_NAME, meta.input_shape(lo), meta.input_shape(opt), meta.input_shape(hi))
    if config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT refused the batch profile {lo},{opt},{hi} for {INPUT_NAME!r}")
    if opts.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        flags.append("GPU_FALLBACK")
    return flags


# --- timing cache --------------------------------------------------------------------------
def default_timing_cache(version: str, gpu_name: str, cc: tuple[int, int]) -> Path:
    """Per-user timing cache, one per TensorRT version and GPU: reused by every later build."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "detnet-trt" / "timing"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return root / f"trt-{version}-{slug}-sm{cc[0]}{cc[1]}.cache"


def load_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        # A cache from another TensorRT/GPU: start an empty one rather than fail the build.
        print(f"detnet-trt build: timing cache {path} does not match, starting a new one", file=sys.stderr)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def save_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, bytes(memoryview(cache.serialize())), force=True)


# --- progress ------------------------------------------------------------------------------
class _Steps:
    """One line per chain step on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.n = 0

    def step(self, text: str) -> None:
        self.n += 1
        if self.enabled:
            print(f"detnet-trt build [{self.n}] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        print(f"detnet-trt build: note: {text}", file=sys.stderr, flush=True)


def _attach_progress(api: compat.TrtApi, config: trt.IBuilderConfig, enabled: bool) -> Any:
    """tqdm bars for TensorRT's build phases (10.x / 11.x); on 8.6 a note that none is reported."""
    if not enabled:
        return None
    base = compat.progress_monitor_base() if api.has_progress_monitor else None
    if base is None:
        print(f"detnet-trt build: TensorRT {api.version} reports no build progress; please wait",
              file=sys.stderr)
        return None
    monitor = _make_monitor(base)
    compat.attach_progress_monitor(config, monitor)
    return monitor


def _make_monitor(base: Any) -> Any:
    from tqdm import tqdm

    class _TqdmMonitor(base):  # type: ignore[misc]  # trt.IProgressMonitor on 10.x / 11.x
        def __init__(self) -> None:
            base.__init__(self)
            self._bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            depth = len(self._bars)
            self._bars[phase_name] = tqdm(total=num_steps, desc=("  " * depth) + phase_name,
                                          position=depth, leave=depth == 0, file=sys.stderr)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

        def close(self) -> None:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()

    return _TqdmMonitor()


__all__: Sequence[str] = ["BuildOptions", "EngineBuildError", "build_engine", "parse_batch", "prepare_onnx"]
