"""ONNX Runtime backend: the CPU reference that runs exactly the file TensorRT builds from.

``providers`` picks ONNX Runtime's execution providers: ``"cpu"`` (default), ``"cuda"`` or
``"tensorrt"`` (both need the ``onnxruntime-gpu`` package), or an explicit list of provider
names. A GPU provider that was asked for but is not available is an error, never a silent CPU
fallback (ONNX Runtime itself would fall back quietly, so the session is checked after it opens).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...core.errors import IncompatibleError, InputError, MissingDependencyError, ModelFileError
from ...core.meta import INPUT_NAME
from ...core.offline import import_ort
from .base import Backend

PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """Provider names for ``providers`` (``None`` = ``"cpu"``), checked against this ONNX Runtime."""
    ort = import_ort()

    if providers is None:
        providers = "cpu"
    if isinstance(providers, str):
        if providers.lower() not in PROVIDERS:
            raise InputError(f"unknown ONNX Runtime device {providers!r}", f"use one of {sorted(PROVIDERS)}")
        names = PROVIDERS[providers.lower()]
    else:
        names = list(providers)
        if not names:
            raise InputError("empty list of ONNX Runtime providers", "pass e.g. ['CPUExecutionProvider']")
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise MissingDependencyError(
            f"ONNX Runtime {ort.__version__} has no {', '.join(missing)} (available: {', '.join(available)})",
            "install onnxruntime-gpu (with CUDA/cuDNN, and TensorRT for the TensorRT provider) in place of "
            "onnxruntime, or run on the CPU",
        )
    return names


class OnnxRuntimeBackend(Backend):
    """Runs an exported detnet_trt ONNX file (FP32, or Q/DQ INT8) with ONNX Runtime.

    >>> with OnnxRuntimeBackend("model.onnx") as be:
    ...     out = be.infer(batch)        # {"boxes": ..., "scores": ..., "class_ids": ...}
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        from ...core.onnx_meta import read_onnx_meta

        self.path = Path(path)
        super().__init__(read_onnx_meta(self.path), max_batch)
        self.providers = resolve_providers(providers)
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.session = None
        self._outputs: list[str] = list(self.meta.output_names)

    def _open(self) -> None:
        ort = import_ort()

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only
        if self.threads is not None:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.path), opts, providers=self.providers)
        except Exception as err:
            raise ModelFileError(
                f"ONNX Runtime cannot load {self.path}: {str(err).splitlines()[0][:300]}",
                "re-export it with `detnet-trt export`",
            ) from err
        active = session.get_providers()
        if self.providers[0] not in active:
            raise IncompatibleError(
                f"ONNX Runtime did not start {self.providers[0]} for {self.path} (running on {', '.join(active)})",
                "check the CUDA / cuDNN / TensorRT libraries that onnxruntime-gpu needs, or use --device cpu",
            )
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [INPUT_NAME] or not set(self._outputs) <= set(outputs):
            raise ModelFileError(
                f"{self.path}: graph has inputs {inputs} and outputs {outputs}, but its metadata says "
                f"[{INPUT_NAME!r}] -> {self._outputs}",
                "re-export it with `detnet-trt export`",
            )
        self.session = session

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        assert self.session is not None  # opened by Backend.infer
        outs = self.session.run(self._outputs, {INPUT_NAME: images})
        return dict(zip(self._outputs, outs))

    def _close(self) -> None:
        self.session = None

    @property
    def active_providers(self) -> list[str]:
        """Providers of the open session (empty when closed)."""
        return list(self.session.get_providers()) if self.session is not None else []

    def describe(self) -> dict[str, str]:
        ort = import_ort()

        d = super().describe()
        d.update(
            {
                "model": str(self.path),
                "onnxruntime": ort.__version__,
                "providers": ",".join(self.active_providers or self.providers),
                "device": "cpu" if (self.active_providers or self.providers)[0] == "CPUExecutionProvider" else "gpu",
                "threads": str(self.threads) if self.threads else "default",
            }
        )
        return d
