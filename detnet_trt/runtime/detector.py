"""Frames in, detections out: letterbox -> backend.infer -> postprocess, for any backend.

The camera loop, ``infer``, evaluation, benchmarks and the servers all go through this, so the
deployment pre- and post-processing is one piece of code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.config import PostprocessConfig
from .backends.base import Backend
from .letterbox import Letterboxer, LetterboxInfo
from .postprocess import Detections, postprocess_with


class Detector:
    """Runs a (opened or not) backend on BGR frames of any size.

    ``post`` holds the post-processing thresholds (score, NMS IoU, detections per image);
    evaluation passes :meth:`PostprocessConfig.for_eval` (a low score threshold). The input buffer
    is allocated once for ``max_batch`` images and reused; calling the detector letterboxes straight
    into the backend's own input memory instead where it lends one (:meth:`Backend.input_buffer`:
    the TensorRT engine's page-locked buffer), so a frame is written once on the host.
    """

    def __init__(self, backend: Backend, post: PostprocessConfig = PostprocessConfig(), max_batch: int = 1) -> None:
        if not isinstance(post, PostprocessConfig):  # the old (conf, iou, max_det) positional form
            raise TypeError(f"Detector's second argument is a PostprocessConfig, got {post!r}: "
                            "pass PostprocessConfig(conf=..., iou=..., max_det=...)")
        self.backend = backend
        self.post = post
        self.letterboxer = Letterboxer(backend.meta.input_size, backend.meta.layout, max_batch)

    @property
    def class_names(self) -> list[str]:
        return self.backend.meta.class_names

    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        return self.letterboxer.fill(list(frames))

    def postprocess(self, outputs: dict[str, np.ndarray], infos: Sequence[LetterboxInfo]) -> list[Detections]:
        return postprocess_with(outputs, infos, self.post)

    def __call__(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in up to ``max_batch`` frames; one :class:`Detections` per frame, in frame pixels."""
        out: list[Detections] = []
        mb = self.letterboxer.max_batch
        for i in range(0, len(frames), mb):
            chunk = list(frames[i : i + mb])
            with self.backend.input_buffer(len(chunk)) as buf:  # None: our own buffer
                batch, infos = self.letterboxer.fill(chunk, out=buf)
                outputs = self.backend.infer(batch)
            out.extend(self.postprocess(outputs, infos))
        return out
