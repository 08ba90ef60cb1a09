"""Frames in, detections out: letterbox -> backend.infer -> postprocess, for any backend.

The camera loop, ``infer``, evaluation, benchmarks and the servers all go through this, so the
deployment pre- and post-processing is one piece of code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.config import DEFAULT_CONF
from .backends.base import Backend
from .letterbox import Letterboxer, LetterboxInfo
from .postprocess import Detections, postprocess


class Detector:
    """Runs a (opened or not) backend on BGR frames of any size.

    ``conf``/``iou``/``max_det`` are the post-processing defaults; evaluation uses a low ``conf``.
    The input buffer is allocated once for ``max_batch`` images and reused.
    """

    def __init__(
        self, backend: Backend, conf: float = DEFAULT_CONF, iou: float = 0.5, max_det: int = 100, max_batch: int = 1
    ) -> None:
        self.backend = backend
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.letterboxer = Letterboxer(backend.meta.input_size, backend.meta.layout, max_batch)

    @property
    def class_names(self) -> list[str]:
        return self.backend.meta.class_names

    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        return self.letterboxer.fill(list(frames))

    def postprocess(self, outputs: dict[str, np.ndarray], infos: Sequence[LetterboxInfo]) -> list[Detections]:
        return postprocess(outputs, infos, self.conf, self.iou, self.max_det)

    def __call__(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in up to ``max_batch`` frames; one :class:`Detections` per frame, in frame pixels."""
        out: list[Detections] = []
        mb = self.letterboxer.max_batch
        for i in range(0, len(frames), mb):
            batch, infos = self.preprocess(frames[i : i + mb])
            out.extend(self.postprocess(self.backend.infer(batch), infos))
        return out
