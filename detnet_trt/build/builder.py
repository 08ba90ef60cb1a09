"""The TensorRT builder steps: parse ONNX -> configure (precision, profile, timing cache, progress)
-> build serialized -> save with the sidecar. ``tensorrt`` is imported lazily; version
differences go through :mod:`detnet_trt.trt.compat`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..core.errors import DetnetError
from ..core.fileio import atomic_write_bytes, sha256_bytes, sha256_file
from ..core.meta import INPUT_NAME, ModelMeta
from ..core.onnx_meta import read_onnx_meta
from ..core.sidecar import EngineInfo, write_sidecar
from ..trt import compat
from .options import BuildOptions, EngineBuildError

if TYPE_CHECKING:
    import tensorrt as trt


def _installed_api() -> compat.TrtApi | None:
    if not compat.have_tensorrt():
        return None
    compat.require_tensorrt("the engine build")
    import tensorrt as trt

    return compat.api_of(trt)


def _build_with_tensorrt(
    api: compat.TrtApi, src: Path, onnx_path: Path, out: Path, opts: BuildOptions, calib_sha: str, log: _Steps
) -> Path:
    """Parse -> configure -> build -> save with the sidecar (the order TensorRT's objects need:
    the logger outlives the builder, the parser holds the network's weights until the build)."""
    import tensorrt as trt

    from ..trt.cuda import device_info
    from ..trt.logger import register_plugins
    from ..trt.plugins import load_plugin_libraries

    meta = read_onnx_meta(onnx_path).with_updates(precision=opts.precision)
    load_plugin_libraries(opts.plugins)
    logger, plugins_ok = register_plugins(opts.verbose)  # the process's one logger (TensorRT keeps its pointer)
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
    _check_parser_plugins(api, onnx_path)
    parse_onnx(parser, onnx_path)
    _check_network(network, meta, onnx_path)

    config = builder.create_builder_config()
    precision_flags = configure(api, builder, network, config, meta, opts)
    fp32_layers = _pin_decode_fp32(api, network, config, onnx_path, precision_flags)
    dla_plan = configure_dla(network, config, opts) if opts.dla_core is not None else None
    cache_path = None if opts.no_timing_cache else (opts.timing_cache or default_timing_cache(api.version, gpu_name, cc))
    if cache_path is not None:
        load_timing_cache(config, cache_path)
    data, seconds = _build_serialized(api, builder, network, config, opts, onnx_path, log)
    layers = _engine_summary(data, logger, log)
    _check_dla_placement(opts, layers, log)

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
            **opts.record(),
            "timing_cache": str(cache_path) if cache_path else None,
            **_build_facts(api, src, onnx_path, opts, precision_flags, seconds),
            "fp32_layers": len(fp32_layers),  # network layers pinned to FP32 (decode, top-k; 8.6 / 10.x)
            "layers": layers,  # engine layers per precision and device (engine inspector)
            "dla_plan": dla_plan,  # network layers the DLA can take, before the build (--dla)
            **opts.extra,
        },
    )
    write_sidecar(out, info, force=True)
    if cache_path is not None:  # after the engine: a cache that cannot be written never costs the build
        save_timing_cache(config, cache_path)
    return out


def _build_serialized(
    api: compat.TrtApi,
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    opts: BuildOptions,
    onnx_path: Path,
    log: _Steps,
) -> tuple[bytes, float]:
    """The serialized engine (with progress bars where TensorRT reports progress) and its build seconds."""
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
    return data, time.perf_counter() - t0


def _build_facts(
    api: compat.TrtApi, src: Path, onnx_path: Path, opts: BuildOptions, precision_flags: list[str], seconds: float
) -> dict[str, Any]:
    """The sidecar's ``build`` entries beyond the options: source, flags, timing, versions."""
    return {
        "source": str(src),
        "source_sha256": sha256_file(src),
        "onnx": str(onnx_path),
        "builder_flags": precision_flags,
        "strongly_typed": api.strongly_typed_only,
        "fp16_mode": api.fp16_mode if api.uses_fp16(opts.precision, opts.int8_fallback) else None,
        "build_seconds": round(seconds, 1),
        "detnet_trt_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _pin_decode_fp32(api: compat.TrtApi, network: trt.INetworkDefinition, config: trt.IBuilderConfig,
                     onnx_path: Path, precision_flags: list[str]) -> list[str]:
    """With the FP16 flag (8.6 / 10.x): the decode and top-k layers pinned to FP32 (11.x: the
    FP16-typed ONNX keeps them FP32 already). Returns the pinned layers' names."""
    if "FP16" not in precision_flags:
        return []
    from .layers import fp32_picker

    return compat.pin_fp32(api, network, config, fp32_picker(onnx_path))


def _engine_summary(data: bytes, logger: trt.ILogger, log: _Steps) -> dict[str, Any]:
    """Deserialize the new engine and count its layers per precision and device (engine inspector);
    printed as a build step and kept in the sidecar."""
    import tensorrt as trt

    from ..trt.inspector import InspectorError
    from .layers import engine_layers, summary, summary_line

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineBuildError("TensorRT built an engine it cannot deserialize", "rerun with --verbose")
    try:
        layers = engine_layers(engine)
    except InspectorError as err:
        log.note(f"no per-layer summary ({err})")
        return {}
    finally:
        del engine, runtime
    if not layers.detailed:
        log.note("no per-layer summary (the engine has layer names only)")
        return {}
    counts = summary(layers)
    log.step(f"engine: {summary_line(counts)}")
    return counts


def _check_dla_placement(opts: BuildOptions, layers: dict[str, Any], log: _Steps) -> None:
    """After a ``--dla`` build: no engine layer on the DLA is an error, unless GPU fallback was asked
    for (then a warning: the engine runs on the GPU)."""
    if opts.dla_core is None or not layers:
        return
    on_dla = int(layers.get("device", {}).get("DLA", 0))
    if on_dla:
        return
    if not opts.dla_gpu_fallback:
        raise EngineBuildError(f"--dla {opts.dla_core}: the engine has no layer on the DLA",
                               "build on the GPU (drop --dla)")
    log.note(f"warning: no layer runs on DLA core {opts.dla_core}: --dla-gpu-fallback moved all of them to the GPU")


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
        _check_dla_precision(api, opts)
        return
    if not compat.platform_supports(api, builder, opts.precision, cc):
        raise compat.UnsupportedPrecisionError(
            f"{gpu_name} (compute capability {cc[0]}.{cc[1]}) has no fast {opts.precision.upper()} "
            f"support in TensorRT {api.version}",
            "build with --fp32 (or --fp16 where INT8 is missing); nothing was built",
        )
    if opts.precision == "int8" and opts.int8_fallback == "fp16" and not compat.platform_supports(api, builder, "fp16", cc):
        raise compat.UnsupportedPrecisionError(
            f"{gpu_name} (compute capability {cc[0]}.{cc[1]}) has no fast FP16 for the layers INT8 leaves",
            "build with --int8-fallback fp32; nothing was built",
        )


def _check_parser_plugins(api: compat.TrtApi, onnx_path: Path) -> None:
    """A graph with ops the parser maps to plugins (RoiAlign: ROIAlign_TRT) needs them registered."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    for op, (name, version) in compat.PARSER_PLUGINS.items():
        if op in ops and not compat.has_plugin(api, name, version):
            raise EngineBuildError(
                f"{onnx_path.name} has {op} nodes, which TensorRT {api.version} parses into the {name} plugin, "
                "and that plugin is not registered",
                "install TensorRT's libnvinfer_plugin (the tensorrt wheel has it; JetPack ships it)",
            )


def _check_dla_precision(api: compat.TrtApi, opts: BuildOptions) -> None:
    """What this TensorRT's DLA runs (:meth:`~.compat.TrtApi.dla_precisions`); refused otherwise."""
    allowed = api.dla_precisions()
    if not allowed:
        raise compat.UnsupportedPrecisionError(
            f"--dla: TensorRT {api.version} does not drive the DLA (DLA builds: TensorRT 8.6, 10.0-10.7, 11.4.1 and "
            "later on JetPack)",
            "build on the GPU (drop --dla), or on the Jetson's own TensorRT; nothing was built",
        )
    if opts.precision not in allowed:
        raise compat.UnsupportedPrecisionError(
            f"--{opts.precision} --dla: the DLA of TensorRT {api.version} runs INT8 only through implicit "
            "quantization (calibrators, dynamic ranges), not from a Q/DQ ONNX; the Q/DQ layers would run on the GPU",
            "build --fp16 --dla, or --int8 on the GPU (drop --dla); nothing was built",
        )


def configure_dla(network: trt.INetworkDefinition, config: trt.IBuilderConfig, opts: BuildOptions) -> dict[str, int]:
    """``--dla CORE``: the DLA as the default device, GPU fallback only with ``--dla-gpu-fallback``;
    returns how many network layers the DLA can take (``config.can_run_on_DLA``) of how many.
    No layer for the DLA, or layers it cannot run without GPU fallback asked for, is an error
    before the build (a DLA build must not quietly become a GPU build)."""
    import tensorrt as trt

    if opts.dla_core is None:
        raise ValueError("configure_dla needs options with a DLA core")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(opts.dla_core)
    if opts.dla_gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    gpu_only = [layer for layer in layers if not config.can_run_on_DLA(layer)]
    plan = {"network_layers": len(layers), "dla_capable": len(layers) - len(gpu_only)}
    if plan["dla_capable"] == 0:
        raise EngineBuildError(
            f"--dla {opts.dla_core}: none of the network's {len(layers)} layers can run on the DLA",
            "build on the GPU (drop --dla); check the precision (--fp16 for the DLA)",
        )
    if gpu_only and not opts.dla_gpu_fallback:
        kinds = sorted({str(layer.type).split(".")[-1] for layer in gpu_only})
        raise EngineBuildError(
            f"--dla {opts.dla_core}: {len(gpu_only)} of {len(layers)} layers cannot run on the DLA "
            f"({', '.join(kinds[:6])}{', ...' if len(kinds) > 6 else ''})",
            "add --dla-gpu-fallback to run those on the GPU (the DLA runs the rest)",
        )
    return plan


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
    flags = compat.set_precision_flags(api, config, opts.precision, opts.int8_fallback)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer detail for the inspector
    profile = builder.create_optimization_profile()
    lo, opt, hi = opts.batch
    profile.set_shape(INPUT_NAME, meta.input_shape(lo), meta.input_shape(opt), meta.input_shape(hi))
    if config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT refused the batch profile {lo},{opt},{hi} for {INPUT_NAME!r}")
    if opts.dla_gpu_fallback:
        flags.append("GPU_FALLBACK")  # set by configure_dla
    return flags


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


def save_timing_cache(config: trt.IBuilderConfig, path: Path) -> bool:
    """Write the builder's timing cache to ``path``; a failure is a warning on stderr (the engine
    is already saved), returned as ``False``."""
    cache = config.get_timing_cache()
    if cache is None:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, bytes(memoryview(cache.serialize())), force=True)
    except (OSError, DetnetError) as err:
        print(f"detnet-trt build: warning: timing cache not saved to {path} ({err}); the engine is fine, "
              "later builds just start without it (--timing-cache PATH elsewhere, or --no-timing-cache)",
              file=sys.stderr)
        return False
    return True


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
