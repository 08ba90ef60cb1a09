"""PyTorch backend: runs a checkpoint (or a DetNetDetector in memory) behind the common interface.

It returns the same host-NMS outputs as the exported graph (``boxes``, ``scores``, ``class_ids``),
so it is the reference the ONNX parity tests compare against, and it lets ``infer``, ``eval`` and
``bench`` run a checkpoint before anything is exported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import IncompatibleError, InputError
from .base import Backend


class TorchBackend(Backend):
    """``TorchBackend("model.pt", device="cpu")`` or ``TorchBackend(model)`` for a DetNetDetector."""

    name = "torch"

    def __init__(self, path_or_model: Any, device: str = "cpu", max_batch: int | None = None) -> None:
        from ...core.fileio import sha256_file

        if isinstance(path_or_model, (str, os.PathLike)):
            from ...models.checkpoint import load_checkpoint

            self.path: Path | None = Path(path_or_model)
            model, _ = load_checkpoint(self.path, map_location="cpu")
            sha = sha256_file(self.path)
        elif hasattr(path_or_model, "meta") and callable(path_or_model):
            self.path, model, sha = None, path_or_model, ""
        else:
            raise InputError(
                f"TorchBackend needs a checkpoint path or a DetNetDetector, got {type(path_or_model).__name__}"
            )
        super().__init__(model.meta().with_updates(checkpoint_sha256=sha), max_batch)
        if str(device).split(":")[0] not in ("cpu", "cuda"):
            raise InputError(f"unknown torch device {device!r}", "use 'cpu' or 'cuda'")
        self.model = model
        self.device = str(device)

    def _open(self) -> None:
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise IncompatibleError(
                f"device {self.device!r} was asked for, but this torch ({torch.__version__}) sees no CUDA GPU",
                "use --device cpu, or install a CUDA build of torch",
            )
        self.model.to(self.device).eval()

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(images).to(self.device))
        return {name: t.detach().cpu().numpy() for name, t in zip(self.meta.output_names, out)}

    def _close(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.model.to("cpu")
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, str]:
        import torch

        d = super().describe()
        d.update({"model": str(self.path) if self.path else self.meta.model, "torch": torch.__version__,
                  "device": self.device})
        return d
