"""The one backend interface: open -> infer(uint8 batch) -> close, usable as a context manager.

Every backend (PyTorch checkpoint, ONNX Runtime, TensorRT engine) takes the same uint8 image
batch described by its :class:`~detnet_trt.core.meta.ModelMeta` and returns the graph's named outputs
as NumPy arrays. Inputs are validated once, here, with the tensor's name in the message; the
subclasses only implement ``_open``, ``_infer`` and ``_close``. A backend that owns its input memory
(the TensorRT engine's page-locked host buffer) lends it through :meth:`Backend.input_buffer`, so
the letterbox writes frames straight where the host-to-device copy reads them.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from types import TracebackType

import numpy as np

from ...core.errors import InputError
from ...core.meta import INPUT_NAME, ModelMeta


class Backend(abc.ABC):
    """Base class of all backends. Subclasses set ``name`` and implement the three hooks."""

    name = "base"

    def __init__(self, meta: ModelMeta, max_batch: int | None = None) -> None:
        self.meta = meta
        self.max_batch = max_batch  # None: any batch size
        self._is_open = False

    # --- life cycle ----------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._is_open

    def open(self) -> Backend:
        """Allocate everything once (session, engine, buffers). Idempotent."""
        if not self._is_open:
            self._open()
            self._is_open = True
        return self

    def close(self) -> None:
        """Free everything. Idempotent."""
        if self._is_open:
            self._is_open = False
            self._close()

    def __enter__(self) -> Backend:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- inference -----------------------------------------------------------------------
    def validate(self, images: np.ndarray) -> None:
        """Check dtype, rank, layout and size of the input batch against the model's metadata."""
        want = self.meta.input_shape()
        if not isinstance(images, np.ndarray):
            raise InputError(f"input '{INPUT_NAME}' must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise InputError(
                f"input '{INPUT_NAME}' must be uint8, got {images.dtype}",
                "pass raw pixels; normalisation happens inside the model",
            )
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(want[1:]):
            raise InputError(
                f"input '{INPUT_NAME}' must have shape {want} ({self.meta.layout}), got {tuple(images.shape)}",
                "letterbox frames with detnet_trt.runtime.letterbox.Letterboxer",
            )
        n = images.shape[0]
        if n < 1:
            raise InputError(f"input '{INPUT_NAME}' has an empty batch")
        if self.max_batch is not None and n > self.max_batch:
            raise InputError(
                f"input '{INPUT_NAME}' has batch {n}, this {self.name} model accepts at most {self.max_batch}",
                "split the batch, or rebuild with a larger maximum batch",
            )

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on a uint8 batch; returns ``{output name: array}`` (see ``meta.output_names``)."""
        if not self._is_open:
            self.open()
        self.validate(images)
        return self._infer(np.ascontiguousarray(images))

    @contextlib.contextmanager
    def input_buffer(self, batch: int) -> Iterator[np.ndarray | None]:
        """The backend's own input memory for a ``batch``-image uint8 input, or ``None``.

        ``with backend.input_buffer(n) as buf:`` fill ``buf`` (shape ``meta.input_shape(n)``) and call
        ``infer(buf)`` inside the block: that infer copies nothing on the host. The buffer is valid
        only inside the block (a backend holds its lock there, so no other caller, and no
        ``close()``, touches it meanwhile). Backends whose framework takes any array (PyTorch,
        ONNX Runtime) yield ``None``: the caller letterboxes into its own buffer.
        """
        yield None

    def host_input_slots(self, batch: int) -> list[np.ndarray] | None:
        """Two of the backend's own input buffers (each shape ``meta.input_shape(batch)``, uint8) for a
        pipelined loop, or ``None``.

        A loop that letterboxes batch N+1 on one thread while batch N is inferred on another fills
        the slot not being inferred and passes it (or its first images) to ``infer()``, which then
        copies nothing on the host. Unlike :meth:`input_buffer` no lock is held: the caller
        guarantees that a slot is not written while an ``infer()`` of it runs, and stops using both
        before ``close()``. Backends without such memory (PyTorch, ONNX Runtime) return ``None``.
        """
        return None

    # --- hooks ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    def describe(self) -> dict[str, str]:
        """Backend name, precision, device and versions, for benchmark and eval records."""
        return {"backend": self.name, "precision": self.meta.precision}
