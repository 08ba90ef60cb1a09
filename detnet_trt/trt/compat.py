"""The one place where TensorRT 8.6, 10.x and 11.x differ.

Everything else in :mod:`detnet_trt.build`, :mod:`detnet_trt.trt` and the TensorRT backend uses names that exist, with the same meaning, in all
four versions the project checks against (8.6.1, 10.3.0, 10.16.1.11, 11.4.0.106: see
``tools/trt_api.py``). The names that exist only in some versions are reached here, through
``getattr`` on names listed in :data:`VERSION_SPECIFIC_NAMES`; the tests check those names against
the real bindings of every version, and mypy checks the rest of the layer against each version's
stubs.

The decisions, by major version:

============================  ===============  ===============  ======================
what                          8.6              10.x             11.x
============================  ===============  ===============  ======================
network creation flags        EXPLICIT_BATCH   none, or         STRONGLY_TYPED
                                               STRONGLY_TYPED   (the only kind)
                                               for typed ONNX
FP16                          BuilderFlag.FP16 BuilderFlag.FP16 FP16-typed ONNX
INT8 (Q/DQ ONNX)              BuilderFlag.INT8 BuilderFlag.INT8 Q/DQ types decide
                              + FP16 (what     + FP16           + FP16-typed ONNX
                              INT8 leaves)                      around Q/DQ (opset 19)
decode + top-k in FP32        layer precision  layer precision  FP32 in the typed ONNX
                              + PREFER_...     + PREFER_...
                              CONSTRAINTS      CONSTRAINTS
DLA (--dla)                   FP16             FP16 (10.0-10.7) FP16, INT8 (11.4.1+)
fast FP16/INT8 check          builder          builder          compute capability
enqueue                       bindings +       tensor addresses tensor addresses +
                              execute_async_v2 + execute_async  execute_async_v3
                                               _v3
build progress                none (a line)    IProgressMonitor IProgressMonitor
============================  ===============  ===============  ======================

INT8 is always explicit quantization (a Q/DQ ONNX); the implicit-quantization calibrators of 8.6
and 10.x are not used, so one INT8 path serves every version. What the Q/DQ pairs leave (the head,
the float parts) runs in FP16 by default (``int8_fallback="fp16"``, as NVIDIA's INT8 recipes set
both flags), or in FP32 (``"fp32"``); the box decode and top-k stay FP32 either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..core.errors import DetnetError, MissingDependencyError

if TYPE_CHECKING:
    import tensorrt as trt

#: How to get TensorRT, in the one line the user sees when it is missing.
INSTALL_HINT = (
    "on a Jetson, JetPack ships it (python3-libnvinfer; use a venv with --system-site-packages); "
    "on x86: pip install 'detnet-trt[tensorrt]'"
)

#: Names that exist only in some versions; ``tests/test_engine_compat.py`` checks each one
#: against the real bindings of every version (present where used, absent where not).
VERSION_SPECIFIC_NAMES: dict[str, tuple[int, ...]] = {
    # name -> majors in which it is used here
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": (8,),
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": (10, 11),
    "BuilderFlag.FP16": (8, 10),
    "BuilderFlag.INT8": (8, 10),
    "Builder.platform_has_fast_fp16": (8, 10),
    "Builder.platform_has_fast_int8": (8, 10),
    "IExecutionContext.execute_async_v2": (8,),
    "ICudaEngine.get_binding_index": (8,),
    "IProgressMonitor": (10, 11),
    "IBuilderConfig.progress_monitor": (10, 11),
    "BuilderFlag.PREFER_PRECISION_CONSTRAINTS": (8, 10),
    "ILayer.precision": (8, 10),
    "ILayer.set_output_type": (8, 10),
}

#: The oldest TensorRT the package supports (as setup.py and the README say) and the newest major.
MIN_VERSION, MAX_MAJOR = (8, 6), 11


class TensorRTMissingError(MissingDependencyError):
    """TensorRT's Python package is not importable here."""


class GpuUnavailableError(MissingDependencyError):
    """TensorRT is installed but cannot use a GPU (no device, no driver, wrong CUDA): as missing as
    TensorRT itself for whoever catches :class:`MissingDependencyError` (the demo)."""


class UnsupportedPrecisionError(DetnetError):
    """The GPU (or DLA, or TensorRT version) cannot build the requested precision."""


def have_tensorrt() -> bool:
    """Whether ``import tensorrt`` would find a package (does not import it)."""
    return importlib.util.find_spec("tensorrt") is not None


def require_tensorrt(what: str = "this step") -> None:
    """Raise :class:`TensorRTMissingError` (one line: what, and how to get it) if TensorRT is absent."""
    if not have_tensorrt():
        raise TensorRTMissingError(f"TensorRT is not installed, {what} needs it", INSTALL_HINT)
    try:
        importlib.import_module("tensorrt")
    except (ImportError, OSError) as err:  # e.g. the bindings without their libnvinfer
        raise TensorRTMissingError(f"TensorRT is installed but does not load ({err}), {what} needs it",
                                   INSTALL_HINT) from None


def parse_version(text: str) -> tuple[int, int, int]:
    """``"10.3.0"`` / ``"8.6.1.6"`` / ``"11.4.0.106"`` -> ``(major, minor, patch)``."""
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if m is None:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class TrtApi:
    """The choices for one TensorRT version; pure data, testable without TensorRT."""

    version: str

    @property
    def major(self) -> int:
        return parse_version(self.version)[0]

    @property
    def strongly_typed_only(self) -> bool:
        """11.x: every network is strongly typed; no FP16/INT8 builder flags, no calibrators."""
        return self.major >= 11

    @property
    def fp16_mode(self) -> str:
        """``"builder-flag"`` (8.6 / 10.x: FP32 ONNX + BuilderFlag.FP16) or ``"typed-onnx"`` (11.x)."""
        return "typed-onnx" if self.strongly_typed_only else "builder-flag"

    @property
    def enqueue_mode(self) -> str:
        """``"bindings"`` (8.6: execute_async_v2) or ``"tensor-addresses"`` (10 / 11: execute_async_v3)."""
        return "bindings" if self.major < 10 else "tensor-addresses"

    @property
    def has_progress_monitor(self) -> bool:
        return self.major >= 10

    def check_supported(self) -> None:
        """:class:`DetnetError` for a version outside 8.6 .. 11.x, naming what to install."""
        major, minor, _ = parse_version(self.version)
        if (major, minor) < MIN_VERSION or major == 9:
            raise DetnetError(
                f"TensorRT {self.version} is not supported: the oldest supported is "
                f"{MIN_VERSION[0]}.{MIN_VERSION[1]} (supported: 8.6, 10.x, 11.x)",
                "install TensorRT 8.6 or newer (JetPack 6.0 ships 8.6, JetPack 6.1 / 6.2 ship 10.3)",
            )
        if major > MAX_MAJOR:
            raise DetnetError(
                f"TensorRT {self.version} is not supported: it is newer than {MAX_MAJOR}.x, the newest this "
                "package was checked against (supported: 8.6, 10.x, 11.x)",
                "install TensorRT 10.x or 11.x, or a detnet-trt release that supports it",
            )

    def network_flag_names(self, strongly_typed: bool) -> tuple[str, ...]:
        """``NetworkDefinitionCreationFlag`` members for a network parsed from ONNX."""
        if self.major < 10:
            return ("EXPLICIT_BATCH",)
        if strongly_typed or self.strongly_typed_only:
            return ("STRONGLY_TYPED",)
        return ()  # 10.x: explicit batch is the default and the flag is deprecated

    def builder_flag_names(self, precision: str, int8_fallback: str = "fp16") -> tuple[str, ...]:
        """``BuilderFlag`` members that enable ``precision`` (none on 11: the ONNX types decide).
        ``int8_fallback``: what the layers without Q/DQ run in under ``int8`` (``fp16``: FP16 flag too)."""
        if self.strongly_typed_only or precision == "fp32":
            return ()
        if precision == "fp16":
            return ("FP16",)
        if precision == "int8":
            return ("INT8", "FP16") if int8_fallback == "fp16" else ("INT8",)
        raise ValueError(f"unknown precision {precision!r}")

    def uses_fp16(self, precision: str, int8_fallback: str = "fp16") -> bool:
        """Whether a ``precision`` build runs layers in FP16 (FP16, or INT8 with the FP16 fallback)."""
        return precision == "fp16" or (precision == "int8" and int8_fallback == "fp16")

    def needs_typed_fp16_onnx(self, precision: str, int8_fallback: str = "fp16") -> bool:
        """11.x: FP16 is the ONNX's types, for an FP16 build and around the Q/DQ of an INT8 one."""
        return self.fp16_mode == "typed-onnx" and self.uses_fp16(precision, int8_fallback)

    def dla_precisions(self) -> tuple[str, ...]:
        """What a DLA core runs with this TensorRT, as this package builds (explicit Q/DQ INT8 only):
        8.6 and 10.0-10.7: FP16 only (their DLA takes INT8 only through implicit quantization, calibrators
        and dynamic ranges, which this package does not use: Q/DQ layers would fall back to the GPU);
        10.8 and later 10.x, 11.0-11.4.0: no DLA at all; 11.4.1 and later (JetPack 7.2.2 on AGX Orin):
        FP16 and INT8, from the tensor types (strongly typed)."""
        v = parse_version(self.version)
        if v[0] < 10 or (v[0] == 10 and v[1] <= 7):
            return ("fp16",)
        if v >= (11, 4, 1):
            return ("fp16", "int8")
        return ()

    @property
    def has_layer_precisions(self) -> bool:
        """8.6 / 10.x (weakly typed): layer precisions can be pinned (11.x: the tensor types decide)."""
        return not self.strongly_typed_only


# --- the few calls whose names differ ------------------------------------------------------
def api_of(trt_module: Any) -> TrtApi:
    api = TrtApi(str(trt_module.__version__))
    api.check_supported()
    return api


def network_flags(api: TrtApi, strongly_typed: bool) -> int:
    import tensorrt as trt

    flags = 0
    for name in api.network_flag_names(strongly_typed):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return flags


def set_precision_flags(api: TrtApi, config: trt.IBuilderConfig, precision: str,
                        int8_fallback: str = "fp16") -> list[str]:
    """Set the builder flags for ``precision``; returns their names (recorded in the sidecar)."""
    import tensorrt as trt

    names = list(api.builder_flag_names(precision, int8_fallback))
    for name in names:
        config.set_flag(getattr(trt.BuilderFlag, name))
    return names


def pin_fp32(api: TrtApi, network: trt.INetworkDefinition, config: trt.IBuilderConfig, pick: Any) -> list[str]:
    """8.6 / 10.x: run the layers ``pick(layer)`` selects in FP32 (layer precision and output types,
    honoured with ``PREFER_PRECISION_CONSTRAINTS``; only layers whose tensors are all float, so
    integer index math is left alone). Returns the pinned layers' names; on 11.x nothing (the
    FP16-typed ONNX already keeps them FP32)."""
    import tensorrt as trt

    if not api.has_layer_precisions:
        return []
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        tensors = [layer.get_input(j) for j in range(layer.num_inputs)]
        tensors += [layer.get_output(j) for j in range(layer.num_outputs)]
        if not pick(layer) or any(t is not None and t.dtype != trt.float32 for t in tensors):
            continue
        setattr(layer, "precision", trt.float32)
        set_output_type = getattr(layer, "set_output_type")
        for j in range(layer.num_outputs):
            set_output_type(j, trt.float32)
        pinned.append(layer.name)
    if pinned:
        config.set_flag(getattr(trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS"))
    return pinned


# Compute capabilities with fast FP16 / INT8 tensor math (what TensorRT's own platform checks
# report: FP16 on 5.3, 6.0, 6.2 and >= 7.0; INT8 (DP4A) from 6.1). Used where the builder has no
# ``platform_has_fast_*`` (11.x), and as a second check elsewhere.
def cc_supports(precision: str, cc: tuple[int, int]) -> bool:
    if precision == "fp32":
        return True
    if precision == "fp16":
        return cc in ((5, 3), (6, 0), (6, 2)) or cc >= (7, 0)
    if precision == "int8":
        return cc >= (6, 1)
    raise ValueError(f"unknown precision {precision!r}")


def platform_supports(api: TrtApi, builder: trt.Builder, precision: str, cc: tuple[int, int]) -> bool:
    """Whether this GPU runs ``precision`` natively (a slow emulation counts as not supported)."""
    if not cc_supports(precision, cc):
        return False
    if api.strongly_typed_only or precision == "fp32":
        return True
    attr = {"fp16": "platform_has_fast_fp16", "int8": "platform_has_fast_int8"}[precision]
    return bool(getattr(builder, attr))


def progress_monitor_base() -> Any:
    """``trt.IProgressMonitor`` where it exists (10.x, 11.x), else ``None`` (8.6)."""
    import tensorrt as trt

    return getattr(trt, "IProgressMonitor", None)


def attach_progress_monitor(config: trt.IBuilderConfig, monitor: Any) -> None:
    # 10.x / 11.x only (callers check ``has_progress_monitor``); absent from 8.6's IBuilderConfig.
    setattr(config, "progress_monitor", monitor)


#: ONNX ops that TensorRT's ONNX parser turns into a plugin of ``libnvinfer_plugin`` instead of a
#: layer, op -> (plugin name, version); the same in 8.6, 10.x and 11.x (onnx-tensorrt's RoiAlign
#: importer). ``init_plugins`` must have run before such a graph is parsed. NonMaxSuppression
#: needs none: the parser makes it an ``INMSLayer`` in all three.
PARSER_PLUGINS: dict[str, tuple[str, str]] = {"RoiAlign": ("ROIAlign_TRT", "1")}


def has_plugin(api: TrtApi, name: str, version: str) -> bool:
    """Whether the plugin registry holds creator ``name`` / ``version``: 8.6 looks it up with
    ``get_plugin_creator``, 10.x with ``get_creator`` (the former deprecated), 11.x has only
    ``get_creator``."""
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    lookup = getattr(registry, "get_creator" if api.major >= 10 else "get_plugin_creator")
    return lookup(name, version, "") is not None


def init_plugins(logger: trt.ILogger) -> bool:
    """Register TensorRT's bundled plugins (EfficientNMS_TRT, ...) with the global registry."""
    import tensorrt as trt

    # The bindings take the logger as an opaque pointer (typed as a capsule in the stubs).
    return bool(trt.init_libnvinfer_plugins(cast(Any, logger), ""))


class Enqueue:
    """Binds buffer addresses once and enqueues the engine on a stream, in the version's way."""

    def __init__(self, api: TrtApi, engine: trt.ICudaEngine, context: trt.IExecutionContext) -> None:
        self.api = api
        self._engine = engine
        self._context = context
        self._bindings: list[int] = []

    def bind(self, addresses: dict[str, int]) -> None:
        """Set the device address of every I/O tensor (call again only when a buffer moves)."""
        if self.api.enqueue_mode == "bindings":
            get_index = getattr(self._engine, "get_binding_index")
            bindings = [0] * len(addresses)
            for name, address in addresses.items():
                index = int(get_index(name))
                if not 0 <= index < len(bindings):
                    raise DetnetError(f"engine has no binding named {name!r}")
                bindings[index] = int(address)
            self._bindings = bindings
            return
        for name, address in addresses.items():
            if not self._context.set_tensor_address(name, int(address)):
                raise DetnetError(f"TensorRT refused the device address of tensor {name!r}")

    def __call__(self, stream_handle: int) -> bool:
        if self.api.enqueue_mode == "bindings":
            execute_v2 = getattr(self._context, "execute_async_v2")
            return bool(execute_v2(bindings=self._bindings, stream_handle=stream_handle))
        return bool(self._context.execute_async_v3(stream_handle))
