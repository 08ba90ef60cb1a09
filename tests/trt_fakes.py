"""A fake GPU for the TensorRT backend's CPU tests: stand-ins for ``pycuda.driver``, the CUDA
driver library (the graph calls ``trt/cuda.py`` makes through ctypes) and the few ``tensorrt``
names the backend uses, all recording what was made, freed and in which order.

They check *our* code's ordering and clean-up (a failed capture ended and destroyed, graphs kept
per batch size, close() waiting for an inference in flight, nothing left after a failed open),
not TensorRT's behaviour: that is what the ``gpu`` tests are for. Device memory is NumPy arrays;
copies and kernels run at once (synchronously); the fake engine's "kernel" writes outputs that
are a function of its input, so a result shows which input and which batch it came from.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PLAN = b"fake plan"  # the only bytes the fake runtime deserializes
GPU_NAME, CC, TRT_VERSION = "FakeGPU", (8, 9), "10.3.0"
INVALIDATED = 901  # CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
LAYER_MS = {"stem.conv + relu": 0.1, "stage4.conv": 0.3, "head.topk": 0.05}  # fake per-layer ms per image


@dataclass
class Gpu:
    """Everything the fakes made, freed and did."""

    events: list[str] = field(default_factory=list)  # ordered log of what happened
    memory: dict[int, np.ndarray] = field(default_factory=dict)  # live device allocations
    pinned: set[int] = field(default_factory=set)  # live page-locked host allocations (id)
    pushed: int = 0  # context push depth, all threads
    retained: int = 0  # primary-context references held
    stream_flags: list[int] = field(default_factory=list)
    capturing: dict[int, list[Any]] = field(default_factory=dict)  # stream handle -> captured work
    graphs: set[int] = field(default_factory=set)  # live CUgraph
    execs: dict[int, list[Any]] = field(default_factory=dict)  # live CUgraphExec -> work
    fail_capture: str = ""  # "", "enqueue" (enqueue returns False under capture) or "invalidate"
    kernel_gate: threading.Event | None = None  # when set: each plain kernel waits for it
    kernel_started: threading.Event = field(default_factory=threading.Event)
    launches: list[tuple[str, int]] = field(default_factory=list)  # ("enqueue" | "graph", batch)
    inspector_json: str = '{"Layers": [], "Bindings": []}'  # what the fake engine inspector returns
    inspected_shapes: list[tuple[int, ...]] = field(default_factory=list)  # the context's input shape then
    profiled: int = 0  # enqueues run with a profiler attached
    loggers: int = 0
    plugin_inits: int = 0
    _next: int = 0x1000

    def handle(self) -> int:
        self._next += 0x100
        return self._next


# --- pycuda.driver ---------------------------------------------------------------------------
class _DriverError(Exception):
    pass


def make_pycuda(gpu: Gpu) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")

    class Context:
        def __init__(self) -> None:
            gpu.retained += 1

        def push(self) -> None:
            gpu.pushed += 1

        def detach(self) -> None:
            gpu.retained -= 1
            gpu.events.append("context detached")

        @staticmethod
        def pop() -> None:
            gpu.pushed -= 1

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            return GPU_NAME

        def compute_capability(self) -> tuple[int, int]:
            return CC

        def retain_primary_context(self) -> Context:
            return Context()

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            gpu.stream_flags.append(flags)
            self.handle = gpu.handle()

        def synchronize(self) -> None:
            gpu.events.append("stream synchronized")

    class Event:
        def record(self, stream: Any) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def time_since(self, other: Any) -> float:
            return 0.5

    class Allocation:
        def __init__(self, nbytes: int) -> None:
            self.address = gpu.handle() * 0x10000
            gpu.memory[self.address] = np.zeros(nbytes, np.uint8)

        def __int__(self) -> int:
            return self.address

        def free(self) -> None:
            gpu.memory.pop(self.address)
            gpu.events.append("device memory freed")

    class HostAllocation:
        def __init__(self, nbytes: int) -> None:
            self.array = np.zeros(nbytes, np.uint8)
            self.__array_interface__ = self.array.__array_interface__
            gpu.pinned.add(id(self))

        def free(self) -> None:
            gpu.pinned.discard(id(self))

    def htod(dev: Allocation, host: np.ndarray, stream: Any) -> None:
        raw = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
        gpu.memory[int(dev)][: raw.size] = raw

    def dtoh(host: np.ndarray, dev: Allocation, stream: Any) -> None:
        flat = host.reshape(-1).view(np.uint8)
        flat[...] = gpu.memory[int(dev)][: flat.size]

    drv.Error = _DriverError
    drv.init = lambda: None
    drv.Device, drv.Context, drv.Stream, drv.Event = Device, Context, Stream, Event
    drv.mem_alloc = Allocation
    drv.pagelocked_empty = lambda n, dtype: np.asarray(HostAllocation(int(n)))
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = htod, dtoh
    return drv


# --- libcuda.so.1: the CUDA graph calls ----------------------------------------------------------
class FakeLibCuda:
    def __init__(self, gpu: Gpu) -> None:
        self.gpu = gpu

    def cuStreamBeginCapture_v2(self, stream: ctypes.c_void_p, mode: ctypes.c_int) -> int:
        self.gpu.capturing[stream.value or 0] = []
        self.gpu.events.append("capture begun")
        return 0

    def cuStreamEndCapture(self, stream: ctypes.c_void_p, graph_ref: Any) -> int:
        work = self.gpu.capturing.pop(stream.value or 0)
        self.gpu.events.append("capture ended")
        if self.gpu.fail_capture == "invalidate":
            return INVALIDATED  # and no graph
        graph = self.gpu.handle()
        self.gpu.graphs.add(graph)
        self.gpu.execs[-graph] = work  # parked until instantiation
        graph_ref._obj.value = graph
        return 0

    def cuGraphInstantiateWithFlags(self, exec_ref: Any, graph: ctypes.c_void_p, flags: Any) -> int:
        g = graph.value or 0
        assert g in self.gpu.graphs, "instantiating a destroyed graph"
        handle = self.gpu.handle()
        self.gpu.execs[handle] = self.gpu.execs.pop(-g)
        exec_ref._obj.value = handle
        return 0

    def cuGraphDestroy(self, graph: ctypes.c_void_p) -> int:
        g = graph.value or 0
        self.gpu.graphs.remove(g)
        self.gpu.execs.pop(-g, None)
        self.gpu.events.append("graph destroyed")
        return 0

    def cuGraphLaunch(self, exec_: ctypes.c_void_p, stream: ctypes.c_void_p) -> int:
        for op in self.gpu.execs[exec_.value or 0]:
            op()
        return 0

    def cuGraphExecDestroy(self, exec_: ctypes.c_void_p) -> int:
        self.gpu.execs.pop(exec_.value or 0)
        self.gpu.events.append("graph exec destroyed")
        return 0

    def cuGetErrorString(self, status: Any, text: Any) -> int:
        return 1  # unknown: "CUDA error N"


# --- tensorrt ------------------------------------------------------------------------------------
def make_tensorrt(gpu: Gpu, meta: Any) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = TRT_VERSION
    names = ["images", *meta.output_names]
    k = meta.topk

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, min_severity: int = 2) -> None:
            self.min_severity = min_severity
            gpu.loggers += 1

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    def init_plugins(logger: Any, namespace: str) -> bool:
        gpu.plugin_inits += 1
        return True

    class IProfiler:
        def __init__(self) -> None:
            pass

    class Context:
        def __init__(self) -> None:
            self.shape: tuple[int, ...] = ()
            self.addresses: dict[str, int] = {}
            self.profiler: Any = None

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            n = self.shape[0]
            return {"images": self.shape, "boxes": (n, k, 4), "scores": (n, k), "class_ids": (n, k)}[name]

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def _kernel(self, n: int, kind: str) -> None:
            """Outputs of batch ``n``: each image's scores are its mean pixel / 255; boxes its index."""
            gpu.launches.append((kind, n))
            images = gpu.memory[self.addresses["images"]][: n * int(np.prod(self.shape[1:]))]
            mean = images.reshape(n, -1).mean(axis=1) / 255.0
            scores = np.repeat(mean[:, None], k, axis=1).astype(np.float32)
            boxes = np.repeat(np.arange(n, dtype=np.float32)[:, None, None], k, axis=1).repeat(4, axis=2)
            for name, arr in (("scores", scores), ("boxes", boxes), ("class_ids", np.zeros((n, k), np.int32))):
                raw = arr.reshape(-1).view(np.uint8)
                gpu.memory[self.addresses[name]][: raw.size] = raw

        def execute_async_v3(self, stream_handle: int) -> bool:
            n = self.shape[0]
            if stream_handle in gpu.capturing:
                gpu.capturing[stream_handle].append(lambda: self._kernel(n, "graph"))  # shape baked in
                return gpu.fail_capture != "enqueue"
            gpu.kernel_started.set()
            if gpu.kernel_gate is not None:
                gpu.kernel_gate.wait(10)
            self._kernel(n, "enqueue")
            if self.profiler is not None:  # enqueue_emits_profile: one report per layer per enqueue
                gpu.profiled += 1
                for layer, ms in LAYER_MS.items():
                    self.profiler.report_layer_time(layer, ms * n)
            return True

    class Engine:
        num_io_tensors = len(names)

        def get_tensor_name(self, i: int) -> str:
            return names[i]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return {"images": np.uint8, "class_ids": np.int32}.get(name, np.float32)

        def create_execution_context(self) -> Context:
            gpu.events.append("execution context created")
            return Context()

        def create_engine_inspector(self) -> Inspector:
            return Inspector()

    class LayerInformationFormat:
        JSON, ONELINE = "json", "oneline"

    class Inspector:
        execution_context: Any = None

        def get_engine_information(self, fmt: str) -> str:
            assert fmt == LayerInformationFormat.JSON
            gpu.inspected_shapes.append(self.execution_context.shape)
            return gpu.inspector_json

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if bytes(data) == PLAN else None

    trt.Logger, trt.TensorIOMode, trt.Runtime = Logger, TensorIOMode, Runtime
    trt.LayerInformationFormat = LayerInformationFormat
    trt.IProfiler = IProfiler
    trt.init_libnvinfer_plugins = init_plugins
    trt.nptype = lambda dtype: dtype
    return trt


def fake_meta() -> Any:
    from detnet_trt.core.meta import ModelMeta

    return ModelMeta("detnet_tiny", ["a", "b"], (16, 16), topk=8, precision="fp16")


def write_engine(folder: Any, data: bytes = PLAN, sha: bool = True, name: str = "m.engine") -> Any:
    """An engine file with its sidecar, made for the fake GPU (batch profile 1, 2, 4); ``sha=False``:
    a sidecar that records no engine hash (so the bytes reach the fake deserializer)."""
    from detnet_trt.core.fileio import sha256_bytes
    from detnet_trt.core.sidecar import EngineInfo, write_sidecar

    path = folder / name
    path.write_bytes(data)
    write_sidecar(path, EngineInfo(meta=fake_meta(), tensorrt_version=TRT_VERSION, gpu_name=GPU_NAME,
                                   compute_capability=CC, onnx_sha256="0" * 64,
                                   engine_sha256=sha256_bytes(data) if sha else "",
                                   build={"batch": [1, 2, 4], "source": "m.onnx"}))
    return path


def install(monkeypatch: Any, meta: Any = None) -> Gpu:
    """Put the fakes where the backend finds them (``pycuda.driver``, ``tensorrt``, libcuda)."""
    from detnet_trt.trt import cuda, logger

    gpu = Gpu()
    drv = make_pycuda(gpu)
    pycuda = types.ModuleType("pycuda")
    pycuda.__spec__ = importlib.machinery.ModuleSpec("pycuda", None)
    pycuda.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(gpu, meta or fake_meta()))
    monkeypatch.setattr(cuda, "_libcuda", FakeLibCuda(gpu))
    monkeypatch.setattr(logger, "_logger", None)  # a fresh process, as far as the logger goes
    monkeypatch.setattr(logger, "_plugins", None)
    return gpu
