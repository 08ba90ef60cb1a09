"""Calibration input: letterboxed uint8 batches of the calibration images (ONNX Runtime's
``CalibrationDataReader``), their content hash, and the preprocessing identity stored in caches.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.images import decode_image
from ..core.meta import INPUT_NAME, ModelMeta


def preprocessing_id(meta: ModelMeta) -> dict[str, Any]:
    """What the calibration images went through, including a hash of the letterbox code, so that a
    change of the runtime's pre-processing makes older calibration results stale."""
    from ..runtime import letterbox as preprocess

    src = inspect.getsource(preprocess.letterbox_geometry) + inspect.getsource(preprocess.letterbox_into)
    return {
        "function": "detnet_trt.preprocess.Letterboxer (letterbox_into)",
        "code_sha256": hashlib.sha256(src.encode("utf-8")).hexdigest(),
        "pad_value": preprocess.PAD_VALUE,
        "input_size": list(meta.input_size),
        "layout": meta.layout,
        "channel_order": meta.channel_order,
        "in_graph": {"mean": list(meta.mean), "std": list(meta.std)},
    }


def _hash_images(files: Sequence[Path], unreadable: Collection[Path]) -> str:
    """sha256 over the names and bytes of ``files`` in order, leaving out ``unreadable`` (found by
    :func:`~.calibset.check_calib_images`, which has already decoded every file once)."""
    h = hashlib.sha256()
    for f in files:
        if f in unreadable:
            continue
        h.update(f.name.encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


class LetterboxDataReader:
    """An ONNX Runtime ``CalibrationDataReader`` over image files through the runtime's letterbox.

    Yields ``{"images": uint8 batch}``; unreadable images are skipped and recorded in
    ``skipped``. ``set_range`` limits it to a slice of the files (chunked calibration).
    """

    def __init__(self, files: Sequence[Path], meta: ModelMeta, batch: int = 1, progress: Any = None) -> None:
        from ..runtime.letterbox import Letterboxer

        self.files = list(files)
        self.letterboxer = Letterboxer(meta.input_size, meta.layout, max_batch=batch)
        self.batch = batch
        self.progress = progress
        self.skipped: list[tuple[Path, str]] = []
        self.used = 0
        self._it: Iterator[dict[str, np.ndarray]] | None = None
        self._range = (0, len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, len(self.files)))
        self._it = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        frames: list[np.ndarray] = []
        for f in self.files[self._range[0] : self._range[1]]:
            img, problem = decode_image(f)
            if self.progress is not None:
                self.progress.update(1)
            if img is None:
                self.skipped.append((f, problem or "cannot decode"))
                continue
            frames.append(img)
            if len(frames) == self.batch:
                yield self._emit(frames)
                frames = []
        if frames:
            yield self._emit(frames)

    def _emit(self, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
        batch, _ = self.letterboxer.fill(frames)
        self.used += len(frames)
        return {INPUT_NAME: batch.copy()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None
