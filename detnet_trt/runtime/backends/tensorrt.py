"""``TensorRTBackend``: a TensorRT engine behind the common backend interface (pycuda buffers).

Life cycle (see :class:`~detnet_trt.runtime.backends.base.Backend`): the constructor reads the sidecar
only (no GPU needed); ``open()`` checks the sidecar against the running TensorRT version and GPU,
deserializes the engine, and allocates page-locked host and device buffers for the largest batch
once; ``infer()`` copies the batch into the pinned input buffer (nothing to copy when it was
letterboxed there: :meth:`TensorRTBackend.input_buffer`, or into either of the two page-locked input
slots :meth:`TensorRTBackend.host_input_slots` lends a pipelined loop), then on one non-blocking stream: async
host-to-device copy, enqueue (``execute_async_v3`` with tensor addresses on 10/11, bindings and
``execute_async_v2`` on 8.6: :class:`~.compat.Enqueue`), async device-to-host copies, and one
synchronisation per batch. Every call makes the backend's CUDA context current and pops it after,
so a backend opened on one thread can run on another; one re-entrant lock serialises ``open``,
``infer``, ``input_buffer`` and ``close``, so a shutdown on another thread waits for the inference
in flight instead of freeing its buffers. ``close()`` frees everything (idempotent); a failed
``open()`` frees what it had made. The TensorRT logger is the process's one
(:mod:`detnet_trt.trt.logger`).

``cuda_graph=True`` captures the enqueue of each batch size as a CUDA graph after its first plain
run and replays it afterwards; the graphs are kept per batch size (the buffers never move after
``open()``), so alternating batch sizes replay their own graphs. A capture that fails (an engine
whose work a CUDA graph cannot hold) is cleaned up, warned about once, and the backend goes on
with plain enqueues, as trtexec does. A graph holds the enqueue only: the host-to-device copy is
issued before each launch, from whichever host slot the batch is in, so the second input slot
needs no graph of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import InputError, ModelFileError
from ...core.meta import INPUT_NAME
from ...core.sidecar import check_compatible, read_sidecar, verify_engine_bytes
from ...trt import compat
from ...trt.cuda import (
    CudaContext,
    CudaError,
    CudaGraph,
    DeviceBuffer,
    Event,
    GraphCaptureError,
    HostBuffer,
    Stream,
    check,
)
from .base import Backend

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import tensorrt as trt


class _Tensor:
    __slots__ = ("name", "is_input", "dtype", "host", "device")

    def __init__(self, name: str, is_input: bool, dtype: np.dtype[Any]) -> None:
        self.name = name
        self.is_input = is_input
        self.dtype = dtype
        self.host = HostBuffer()
        self.device = DeviceBuffer()


class TensorRTBackend(Backend):
    """Runs a ``detnet-trt build`` engine (``.engine`` / ``.plan`` with its ``.json`` sidecar)."""

    name = "tensorrt"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: int = 0,
        plugins: tuple[str | os.PathLike[str], ...] | list[str] | None = None,
        cuda_graph: bool = False,
        max_batch: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: no such engine file", "build one with `detnet-trt build`")
        self.info = read_sidecar(self.path)
        lo, _, hi = self.info.batch_range
        if max_batch is not None and max_batch > hi:
            raise InputError(
                f"max_batch {max_batch} is above the engine's largest batch {hi}",
                f"rebuild with --batch {lo},{lo},{max_batch}",
            )
        super().__init__(self.info.meta, max_batch=max_batch or hi)
        self.min_batch = lo
        self.device = device
        self.plugins = list(plugins) if plugins is not None else list(self.info.build.get("plugins") or [])
        self.cuda_graph = cuda_graph
        self.verbose = verbose
        self._lock = threading.RLock()  # infer, input_buffer, close: one at a time
        self._reset()

    def _reset(self) -> None:
        self._ctx: CudaContext | None = None
        self._plugin_handles: list[Any] = []
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._enqueue: compat.Enqueue | None = None
        self._stream: Stream | None = None
        self._tensors: list[_Tensor] = []
        self._spare_input = HostBuffer()  # the second page-locked input slot (host_input_slots)
        self._graphs: dict[int, CudaGraph] = {}
        self._graphs_failed = False  # a capture failed: plain enqueues from then on (this open)
        self._batch = 0
        self._events: list[Event] = []
        self._timed = False
        self.trt_version = ""
        self.gpu_name = ""

    # --- life cycle ------------------------------------------------------------------------
    def open(self) -> TensorRTBackend:
        with self._lock:
            super().open()
        return self

    def close(self) -> None:
        """Free everything, after the inference in flight on another thread (if any) is done."""
        with self._lock:
            super().close()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """As :meth:`Backend.infer` (a closed backend is opened again), under the lock from the open
        check to the results: a ``close()`` on another thread comes before or after, never between."""
        with self._lock:
            return super().infer(images)

    def _open(self) -> None:
        data = self.path.read_bytes()
        verify_engine_bytes(self.path, data, self.info)  # the sidecar's engine sha256, before anything uses it
        compat.require_tensorrt("the TensorRT backend")
        import tensorrt as trt

        api = compat.api_of(trt)
        ctx = self._ctx = CudaContext(self.device)
        try:
            with ctx.active():
                check_compatible(self.info, self.path, tensorrt_version=api.version, gpu_name=ctx.name,
                                 compute_capability=ctx.compute_capability)
                self._create(api, data)
                self.trt_version, self.gpu_name = api.version, ctx.name
        except BaseException:
            self._release()
            raise

    def _create(self, api: compat.TrtApi, data: bytes) -> None:
        """Runtime, engine, context, buffers, stream and events (the CUDA context is current)."""
        from ...trt.logger import register_plugins
        from ...trt.plugins import load_plugin_libraries

        self._plugin_handles = load_plugin_libraries(self.plugins)
        logger, _ = register_plugins(self.verbose)  # one logger per process: TensorRT keeps its pointer
        self._runtime = create_runtime(logger)
        dla_core = self.info.build.get("dla_core")
        if dla_core is not None:  # an engine built for a DLA core runs on that core
            self._runtime.DLA_core = int(dla_core)
        engine = self._engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelFileError(f"{self.path}: TensorRT {api.version} could not deserialize the engine",
                                 "see TensorRT's message above; rebuild it here")
        context = self._context = check(engine.create_execution_context(), "creating an execution context")
        self._tensors = _io_tensors(engine)
        self._check_io()
        self._stream = Stream()
        self._allocate(context, self.max_batch or self.info.batch_range[2])
        self._enqueue = compat.Enqueue(api, engine, context)
        self._enqueue.bind({t.name: t.device.address for t in self._tensors})
        self._events = [Event() for _ in range(4)]

    def _check_io(self) -> None:
        inputs = [t.name for t in self._tensors if t.is_input]
        outputs = sorted(t.name for t in self._tensors if not t.is_input)
        if inputs != [INPUT_NAME] or outputs != sorted(self.meta.output_names):
            raise ModelFileError(
                f"{self.path}: engine tensors {inputs} -> {outputs} do not match the sidecar "
                f"({INPUT_NAME!r} -> {list(self.meta.output_names)})", "rebuild the engine"
            )

    def _allocate(self, context: trt.IExecutionContext, batch: int) -> None:
        """Size every buffer for ``batch`` images, once (buffers only grow; a moved one drops the graphs)."""
        self._set_batch(context, batch)
        moved = False
        for t in self._tensors:
            shape = _dims(context.get_tensor_shape(t.name))
            nbytes = int(np.prod(shape, dtype=np.int64)) * t.dtype.itemsize
            t.host.ensure(nbytes)
            if t.is_input:
                self._spare_input.ensure(nbytes)
            moved |= t.device.ensure(nbytes)
        if moved:
            self._free_graphs()  # they hold the old device addresses

    def _set_batch(self, context: trt.IExecutionContext, n: int) -> None:
        """Set the input shape for ``n`` images. The graphs stay: each was captured at its own batch
        size on the same addresses, and is launched only after the context is set back to it."""
        if n != self._batch:
            shape = self.meta.input_shape(n)
            if not context.set_input_shape(INPUT_NAME, shape):
                raise InputError(f"the engine refused input shape {shape}",
                                 f"its batch range is {self.info.batch_range}")
            self._batch = n

    def _close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free what exists, in reverse order of creation, with the CUDA context current; then drop
        the context. Safe on a half-made backend (a failed open) and idempotent."""
        ctx = self._ctx
        if ctx is not None:
            try:
                with ctx.active():
                    if self._stream is not None:
                        with contextlib.suppress(CudaError):
                            self._stream.synchronize()  # nothing may still read or write the buffers
                    self._free_graphs()
                    self._events = []
                    # TensorRT objects, newest first: the enqueue's hold on the context, the
                    # context, the engine, the runtime (the process's logger stays).
                    self._enqueue = None
                    self._context = None
                    self._engine = None
                    self._runtime = None
                    for t in self._tensors:
                        t.device.free()
                        t.host.free()
                    self._spare_input.free()
                    self._tensors = []
                    if self._stream is not None:
                        self._stream.free()
                        self._stream = None
            finally:
                ctx.close()
        self._reset()

    def _free_graphs(self) -> None:
        for g in self._graphs.values():
            g.free()
        self._graphs.clear()

    # --- inference -------------------------------------------------------------------------
    def validate(self, images: np.ndarray) -> None:
        super().validate(images)
        if images.shape[0] < self.min_batch:
            raise InputError(
                f"input {INPUT_NAME!r} has batch {images.shape[0]}, this engine needs at least {self.min_batch}",
                "pad the batch, or rebuild with --batch 1,...",
            )

    @contextlib.contextmanager
    def input_buffer(self, batch: int) -> Iterator[np.ndarray | None]:
        """The engine's page-locked host input, viewed as a ``batch``-image uint8 batch, under the lock:
        fill it and ``infer()`` it inside the block and the frame is not copied again on the host."""
        self._check_batch(batch)
        with self._lock:
            t = self._open_input()
            yield t.host.view(self.meta.input_shape(batch), t.dtype) if t.dtype == np.uint8 else None

    def host_input_slots(self, batch: int) -> list[np.ndarray] | None:
        """The engine's two page-locked host inputs, each viewed as a ``batch``-image uint8 batch (see
        :meth:`Backend.host_input_slots`); ``None`` for an engine whose input is not uint8. Valid until
        ``close()``: the caller stops filling them before it closes the backend."""
        self._check_batch(batch)
        with self._lock:
            t = self._open_input()
            if t.dtype != np.uint8:
                return None
            shape = self.meta.input_shape(batch)
            return [t.host.view(shape, t.dtype), self._spare_input.view(shape, t.dtype)]

    def _open_input(self) -> _Tensor:
        """The input tensor's buffers, opening the backend if needed (call under the lock)."""
        self.open()
        t = next((t for t in self._tensors if t.is_input), None)
        if t is None:
            raise CudaError("the TensorRT backend is not open")
        return t

    def _check_batch(self, batch: int) -> None:
        lo, hi = self.min_batch, self.max_batch or self.info.batch_range[2]
        if not lo <= batch <= hi:
            raise InputError(f"input {INPUT_NAME!r} batch {batch} is outside this engine's {lo} to {hi}",
                             "split the batch, or rebuild with a wider --batch")

    def _own_input(self, t: _Tensor, images: np.ndarray) -> bool:
        """Whether ``images`` is the start of one of the two page-locked input slots (no host copy)."""
        return any(hb.capacity >= images.nbytes and _same_memory(hb.view(images.shape, t.dtype), images)
                   for hb in (t.host, self._spare_input))

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n = int(images.shape[0])
        with self._lock:
            ctx, context, stream, enqueue = self._ctx, self._context, self._stream, self._enqueue
            if ctx is None or context is None or stream is None or enqueue is None:
                raise CudaError("the TensorRT backend is not open (closed meanwhile?)", "open() it again")
            with ctx.active():
                self._set_batch(context, n)
                graph = self._graphs.get(n)
                result = self._run(images, context, stream, graph, enqueue)
                if self.cuda_graph and graph is None and not self._graphs_failed:
                    self._capture(n, stream, enqueue)
        return result

    def _run(self, images: np.ndarray, context: trt.IExecutionContext, stream: Stream, graph: CudaGraph | None,
             enqueue: compat.Enqueue) -> dict[str, np.ndarray]:
        """H2D, the graph's launch or a plain enqueue, D2H and one synchronisation, with the four
        timing events."""
        ev = self._events
        ev[0].record(stream)
        views: dict[str, np.ndarray] = {}
        for t in self._tensors:
            if t.is_input:
                if self._own_input(t, images):  # letterboxed into a page-locked slot: no host copy
                    host = images
                else:
                    host = t.host.view(images.shape, t.dtype)
                    np.copyto(host, images)
                t.device.copy_from(host, stream)
        ev[1].record(stream)
        if graph is not None:
            graph.launch(stream)
        else:
            check(enqueue(stream.handle), "TensorRT enqueue")
        ev[2].record(stream)
        for t in self._tensors:
            if not t.is_input:
                host = t.host.view(_dims(context.get_tensor_shape(t.name)), t.dtype)
                t.device.copy_to(host, stream)
                views[t.name] = host
        ev[3].record(stream)
        stream.synchronize()
        self._timed = True
        return {name: np.array(v, copy=True) for name, v in views.items()}

    def _capture(self, n: int, stream: Stream, enqueue: compat.Enqueue) -> None:
        """Capture batch ``n``'s enqueue (it has just run once, outside capture, as TensorRT asks)."""
        try:
            self._graphs[n] = CudaGraph(stream, lambda: enqueue(stream.handle))
        except GraphCaptureError as err:
            self._graphs_failed = True
            log.warning("%s: %s; running without CUDA graphs (plain enqueue), as trtexec does", self.path.name, err)

    def gpu_timings(self) -> dict[str, float] | None:
        """GPU-side split of the last ``infer()`` in ms (CUDA events): h2d, compute, d2h."""
        if not self._timed or self._ctx is None or len(self._events) < 4:
            return None
        with self._lock, self._ctx.active():
            e = self._events
            return {"h2d": e[1].ms_since(e[0]), "compute": e[2].ms_since(e[1]), "d2h": e[3].ms_since(e[2])}

    def layer_information(self, batch: int | None = None) -> str:
        """TensorRT's engine inspector JSON (:mod:`detnet_trt.trt.inspector`), with the input shape
        set to ``batch`` images (default: the profile's optimum) so formats and dimensions are concrete."""
        from ...trt.inspector import engine_information

        with self._lock:
            self.open()
            ctx, engine, context = self._ctx, self._engine, self._context
            if ctx is None or engine is None or context is None:
                raise CudaError("the TensorRT backend is not open (closed meanwhile?)", "open() it again")
            lo, opt, hi = self.info.batch_range
            n = opt if batch is None else batch
            if not lo <= n <= hi:
                raise InputError(f"batch {n} is outside this engine's {lo} to {hi}", f"pass --batch between {lo} and {hi}")
            with ctx.active():
                self._set_batch(context, n)
                return engine_information(engine, context)

    def profile_layers(self, images: np.ndarray, runs: int) -> dict[str, list[float]]:
        """Per-layer times in ms (layer name -> one value per run, engine order) of ``runs`` plain
        enqueues of ``images`` with TensorRT's profiler attached (:mod:`detnet_trt.trt.profiler`;
        as trtexec ``--dumpProfile`` with a separate profile run: never in a CUDA graph, and the
        profiler is detached again before returning)."""
        from ...trt.profiler import layer_profiler

        self.validate(images)
        images = np.ascontiguousarray(images)
        with self._lock:
            self.open()
            ctx, context, stream, enqueue = self._ctx, self._context, self._stream, self._enqueue
            if ctx is None or context is None or stream is None or enqueue is None:
                raise CudaError("the TensorRT backend is not open (closed meanwhile?)", "open() it again")
            with ctx.active():
                self._set_batch(context, int(images.shape[0]))
                self._run(images, context, stream, None, enqueue)  # the input on the device, a warm run
                profiler = layer_profiler()
                target: Any = context  # the bindings take None to detach
                target.profiler = profiler
                try:
                    for _ in range(runs):
                        check(enqueue(stream.handle), "TensorRT enqueue (profiling)")
                        stream.synchronize()
                finally:
                    target.profiler = None
        return dict(profiler.times)

    def describe(self) -> dict[str, str]:
        d = super().describe()
        d.update({
            "engine": self.path.name,
            "tensorrt": self.trt_version or self.info.tensorrt_version,
            "device": self.gpu_name or self.info.gpu_name,
            "cuda_graph": str(self.cuda_graph),
        })
        return d


def create_runtime(logger: trt.ILogger) -> trt.Runtime:
    """``trt.Runtime``; :class:`~.compat.GpuUnavailableError` when TensorRT cannot use a GPU."""
    import tensorrt as trt

    try:
        return trt.Runtime(logger)
    except (TypeError, RuntimeError) as err:
        raise compat.GpuUnavailableError(
            f"TensorRT {trt.__version__} could not create a Runtime: no usable CUDA GPU ({err})",
            "check the driver and device (nvidia-smi, or tegrastats on a Jetson)",
        ) from None


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are the same bytes (same start, shape and dtype; both C-contiguous)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.dtype == b.dtype)


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _io_tensors(engine: trt.ICudaEngine) -> list[_Tensor]:
    import tensorrt as trt

    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        tensors.append(_Tensor(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
    return tensors
