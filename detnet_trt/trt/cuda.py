"""The small CUDA layer under the TensorRT runtime (pycuda).

A context owner (:class:`CudaContext`: the device's primary context, pushed around every use so a
backend works from any thread), :func:`device_info` (driver API, no pycuda), a non-blocking
:class:`Stream` (no implicit synchronisation with the legacy default stream, which TensorRT's
``enqueueV3`` documentation warns against), :class:`Event`, a :class:`DeviceBuffer` that grows
only when it must, page-locked :class:`HostBuffer`, explicit ``free()``, optional CUDA-graph
capture (:class:`CudaGraph`, driver API through ctypes: pycuda has no graph API; a capture that
fails ends the capture and destroys what it made, then raises :class:`GraphCaptureError`, as
trtexec's ``endCaptureOnError`` does), and one :func:`check` that turns a CUDA status into an
exception. ``pycuda`` is imported lazily, only here.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..core.errors import DetnetError, MissingDependencyError

PYCUDA_HINT = (
    "pip install 'detnet-trt[tensorrt]' (pycuda; on a Jetson it compiles against JetPack's CUDA: "
    "export PATH=/usr/local/cuda/bin:$PATH first)"
)


class CudaError(DetnetError):
    """A CUDA call failed (out of memory, no device, invalid handle, ...)."""


class GraphCaptureError(CudaError):
    """A CUDA graph could not be captured or instantiated; nothing of it is left behind."""


def have_pycuda() -> bool:
    return importlib.util.find_spec("pycuda") is not None


def _driver() -> Any:
    if not have_pycuda():
        raise MissingDependencyError("pycuda is not installed, the TensorRT runtime needs it", PYCUDA_HINT)
    import pycuda.driver as drv

    return drv


def check(status: Any, what: str) -> Any:
    """Turn a failed CUDA/TensorRT status into :class:`CudaError`; return ``status`` otherwise.

    Accepts a CUDA driver ``CUresult`` (``0`` is success), a TensorRT ``bool`` result (``False``
    is failure) or an object result (``None`` is failure).
    """
    if status is None or status is False:
        raise CudaError(f"{what} failed")
    if isinstance(status, int) and not isinstance(status, bool) and status != 0:
        raise CudaError(f"{what} failed: {_cu_error_string(status)}")
    return status


@contextlib.contextmanager
def cuda_errors(what: str) -> Iterator[None]:
    """Re-raise pycuda's exceptions as :class:`CudaError` naming the step."""
    drv = _driver()
    try:
        yield
    except drv.Error as err:
        raise CudaError(f"{what} failed: {err}") from err


# --- context -------------------------------------------------------------------------------
class CudaContext:
    """Owns a reference to one device's primary context (the one TensorRT and the CUDA runtime use).

    ``with ctx.active(): ...`` makes it current on the calling thread and pops it afterwards, so a
    backend opened on one thread can run on another. ``close()`` releases the reference.
    """

    def __init__(self, device: int = 0) -> None:
        drv = _driver()
        with cuda_errors("CUDA initialisation"):
            drv.init()
            count = drv.Device.count()
        if not 0 <= device < count:
            raise CudaError(
                f"CUDA device {device} requested, {count} device(s) present",
                "pick a device index below the count, or check the driver (nvidia-smi / tegrastats)",
            )
        with cuda_errors(f"opening CUDA device {device}"):
            self._device = drv.Device(device)
            self._context: Any = self._device.retain_primary_context()
        self.index = device
        self.name = str(self._device.name())
        major, minor = self._device.compute_capability()
        self.compute_capability = (int(major), int(minor))

    @contextlib.contextmanager
    def active(self) -> Iterator[CudaContext]:
        if self._context is None:
            raise CudaError("the CUDA context was already closed")
        drv = _driver()
        with cuda_errors("making the CUDA context current"):
            self._context.push()
        try:
            yield self
        finally:
            drv.Context.pop()

    def close(self) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):
                self._context.detach()
            self._context = None


def device_info(device: int = 0) -> tuple[str, tuple[int, int]]:
    """``(GPU name, compute capability)`` of CUDA device ``device``, from the driver (no pycuda)."""
    lib = _cuda_lib()
    check(lib.cuInit(ctypes.c_uint(0)), "CUDA initialisation")
    count = ctypes.c_int()
    check(lib.cuDeviceGetCount(ctypes.byref(count)), "counting CUDA devices")
    if not 0 <= device < count.value:
        raise CudaError(f"CUDA device {device} requested, {count.value} device(s) present",
                        "pick a device index below the count, or check the driver (nvidia-smi / tegrastats)")
    dev = ctypes.c_int()
    check(lib.cuDeviceGet(ctypes.byref(dev), ctypes.c_int(device)), f"opening CUDA device {device}")
    name = ctypes.create_string_buffer(256)
    check(lib.cuDeviceGetName(name, ctypes.c_int(len(name)), dev), "reading the GPU name")
    cc = []
    for attribute in (_CC_MAJOR, _CC_MINOR):
        value = ctypes.c_int()
        check(lib.cuDeviceGetAttribute(ctypes.byref(value), ctypes.c_int(attribute), dev), "reading the compute capability")
        cc.append(value.value)
    return name.value.decode(errors="replace"), (cc[0], cc[1])


class Event:
    """A CUDA event recorded on a stream (for GPU-side timings)."""

    def __init__(self) -> None:
        drv = _driver()
        with cuda_errors("creating a CUDA event"):
            self.raw: Any = drv.Event()

    def record(self, stream: Stream) -> None:
        self.raw.record(stream.raw)

    def ms_since(self, start: Event) -> float:
        with cuda_errors("reading a CUDA event"):
            self.raw.synchronize()
            return float(self.raw.time_since(start.raw))


# --- stream and buffers --------------------------------------------------------------------
class Stream:
    """A CUDA stream created with ``CU_STREAM_NON_BLOCKING`` (pycuda's ``Stream(flags=)``)."""

    def __init__(self, non_blocking: bool = True) -> None:
        drv = _driver()
        with cuda_errors("creating a CUDA stream"):
            self.raw: Any = drv.Stream(flags=_CU_STREAM_NON_BLOCKING if non_blocking else 0)

    @property
    def handle(self) -> int:
        return int(self.raw.handle)

    def synchronize(self) -> None:
        with cuda_errors("synchronising the CUDA stream"):
            self.raw.synchronize()

    def free(self) -> None:
        self.raw = None


class DeviceBuffer:
    """Device memory that grows only when a larger size is asked for."""

    def __init__(self, nbytes: int = 0) -> None:
        self._mem: Any = None
        self.capacity = 0
        if nbytes:
            self.ensure(nbytes)

    def ensure(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; returns True when the buffer moved (addresses must be rebound)."""
        if nbytes <= self.capacity and self._mem is not None:
            return False
        drv = _driver()
        self.free()
        with cuda_errors(f"allocating {nbytes} bytes of device memory"):
            self._mem = drv.mem_alloc(max(int(nbytes), 1))
        self.capacity = int(nbytes)
        return True

    def _live(self) -> Any:
        if self._mem is None:
            raise CudaError("device buffer used after free()")
        return self._mem

    @property
    def address(self) -> int:
        return int(self._live())

    def copy_from(self, host: np.ndarray, stream: Stream) -> None:
        drv = _driver()
        with cuda_errors("host-to-device copy"):
            drv.memcpy_htod_async(self._live(), host, stream.raw)

    def copy_to(self, host: np.ndarray, stream: Stream) -> None:
        drv = _driver()
        with cuda_errors("device-to-host copy"):
            drv.memcpy_dtoh_async(host, self._live(), stream.raw)

    def free(self) -> None:
        if self._mem is not None:
            self._mem.free()
            self._mem = None
            self.capacity = 0


class HostBuffer:
    """Page-locked host memory (fast async copies), viewed as any dtype/shape that fits."""

    def __init__(self, nbytes: int = 0) -> None:
        self._mem: np.ndarray | None = None
        if nbytes:
            self.ensure(nbytes)

    @property
    def capacity(self) -> int:
        return 0 if self._mem is None else int(self._mem.nbytes)

    def ensure(self, nbytes: int) -> bool:
        if self._mem is not None and nbytes <= self.capacity:
            return False
        drv = _driver()
        self.free()
        with cuda_errors(f"allocating {nbytes} bytes of page-locked host memory"):
            self._mem = drv.pagelocked_empty(max(int(nbytes), 1), np.uint8)
        return True

    def view(self, shape: tuple[int, ...], dtype: np.dtype[Any] | type) -> np.ndarray:
        """The first ``prod(shape)`` elements as an array of ``dtype`` (no copy)."""
        if self._mem is None:
            raise CudaError("host buffer used after free()")
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return self._mem[: count * dt.itemsize].view(dt).reshape(shape)

    def free(self) -> None:
        if self._mem is not None:
            base = getattr(self._mem, "base", None)
            if base is not None and hasattr(base, "free"):
                base.free()  # pycuda's HostAllocation: release the pinned pages now
            self._mem = None


# --- driver API through ctypes: device info (no pycuda needed to build) and CUDA graphs (pycuda has none)
_CU_STREAM_NON_BLOCKING = 1  # CUstream_flags
_CAPTURE_MODE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, as trtexec captures
_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
_libcuda: ctypes.CDLL | None = None


def _cuda_lib() -> ctypes.CDLL:
    global _libcuda
    if _libcuda is None:
        try:
            _libcuda = ctypes.CDLL("libcuda.so.1")
        except OSError as err:
            raise CudaError(f"the CUDA driver library libcuda.so.1 cannot be loaded: {err}",
                            "install the NVIDIA driver (JetPack on a Jetson); no GPU, no engine") from None
    return _libcuda


def _cu_error_string(status: int) -> str:
    try:
        lib = _cuda_lib()
    except CudaError:
        return f"CUDA error {status}"
    text = ctypes.c_char_p()
    if lib.cuGetErrorString(ctypes.c_int(status), ctypes.byref(text)) == 0 and text.value:
        return f"CUDA error {status}: {text.value.decode(errors='replace')}"
    return f"CUDA error {status}"


class CudaGraph:
    """An instantiated CUDA graph of the work ``fn`` enqueues on ``stream`` (``fn() -> bool``).

    Capture follows trtexec (``TrtCudaGraph``): thread-local capture mode; the capture is always
    ended, whatever ``fn`` did; when ``fn`` failed (returned false or raised) or the capture was
    invalidated, the partial graph is destroyed and :class:`GraphCaptureError` raised; the graph
    is destroyed once instantiated (the executable graph is what is launched). Run the work once
    outside capture first (TensorRT's deferred set-up must not happen under capture).
    """

    def __init__(self, stream: Stream, fn: Callable[[], Any]) -> None:
        lib = _cuda_lib()
        self._exec = ctypes.c_void_p()
        handle = ctypes.c_void_p(stream.handle)
        check(lib.cuStreamBeginCapture_v2(handle, ctypes.c_int(_CAPTURE_MODE_THREAD_LOCAL)), "CUDA graph capture start")
        failure = ""
        try:
            if not fn():
                failure = "the enqueue failed under capture (the engine has work a CUDA graph cannot hold)"
        except Exception as err:  # noqa: BLE001 - reported below, after the capture is ended
            failure = f"the enqueue raised under capture: {err}"
        finally:
            graph = ctypes.c_void_p()
            status = lib.cuStreamEndCapture(handle, ctypes.byref(graph))
        if not failure and status != 0:
            failure = f"ending the capture failed: {_cu_error_string(status)}"
        if not failure and graph:
            status = lib.cuGraphInstantiateWithFlags(ctypes.byref(self._exec), graph, ctypes.c_ulonglong(0))
            if status != 0:
                self._exec = ctypes.c_void_p()
                failure = f"instantiating the graph failed: {_cu_error_string(status)}"
        elif not failure:
            failure = "the capture returned no graph"
        if graph:
            lib.cuGraphDestroy(graph)
        if failure:
            raise GraphCaptureError(f"CUDA graph capture failed: {failure}")

    def launch(self, stream: Stream) -> None:
        if not self._exec:
            raise CudaError("CUDA graph launched after free()")
        check(_cuda_lib().cuGraphLaunch(self._exec, ctypes.c_void_p(stream.handle)), "CUDA graph launch")

    def free(self) -> None:
        if self._exec:
            _cuda_lib().cuGraphExecDestroy(self._exec)
            self._exec = ctypes.c_void_p()
