"""Host post-processing: score threshold, class-aware NMS, max detections, undo the letterbox.

:func:`postprocess` and :func:`postprocess_image` are pure ops with scalar thresholds (as
torchvision's); their defaults are those of :mod:`detnet_trt.core.config`, and
:func:`postprocess_with` takes a :class:`~detnet_trt.core.config.PostprocessConfig` instead.

Boxes are ``(M, 4)`` float32 ``xyxy`` (x1, y1, x2, y2) in pixels; empty input gives empty output.
The model's graph already reduced the dense predictions to a per-image top-K, so NMS runs on at
most K (default 1000) candidates per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.config import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, PostprocessConfig
from ..core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS
from .letterbox import LetterboxInfo
from .nms import batched_nms


@dataclass
class Detections:
    """Final detections of one image: ``boxes`` (M, 4) xyxy float32, ``scores`` (M,), ``class_ids`` (M,)."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32))

    def to_list(self, class_names: Sequence[str] | None = None) -> list[dict]:
        """JSON-friendly records: ``{"box": [x1, y1, x2, y2], "score", "class_id"[, "class_name"]}``."""
        out = []
        for b, s, c in zip(self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist()):
            rec = {"box": [round(v, 2) for v in b], "score": round(s, 5), "class_id": int(c)}
            if class_names is not None:
                rec["class_name"] = class_names[c] if 0 <= c < len(class_names) else str(c)
            out.append(rec)
        return out


def postprocess_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    info: LetterboxInfo | None = None,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    max_det: int = DEFAULT_MAX_DET,
) -> Detections:
    """Top-K candidates of one image -> final detections in frame pixels (or input pixels)."""
    mask = scores >= conf
    if not mask.any():
        return Detections.empty()
    b, s, c = boxes[mask], scores[mask], class_ids[mask]
    keep = batched_nms(b, s, c, iou)[:max_det]
    b, s, c = b[keep], s[keep], c[keep]
    if info is not None:
        b = info.to_frame(b)
    return Detections(b.astype(np.float32, copy=False), s.astype(np.float32), c.astype(np.int32))


def postprocess(
    outputs: Mapping[str, np.ndarray],
    infos: Sequence[LetterboxInfo | None] | None = None,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    max_det: int = DEFAULT_MAX_DET,
) -> list[Detections]:
    """Backend outputs of a batch -> one :class:`Detections` per image.

    Accepts either output contract of :mod:`detnet_trt.core.meta`: top-K candidates (host NMS) or
    padded in-graph NMS results (then only the threshold, ``max_det`` and the letterbox undo
    apply). ``infos[i]`` maps image i back to its frame; ``None`` keeps input pixels.
    """
    if all(k in outputs for k in HOST_NMS_OUTPUTS):
        boxes, scores, cls = (outputs[k] for k in HOST_NMS_OUTPUTS)
        n = boxes.shape[0]
        infos = list(infos) if infos is not None else [None] * n
        return [postprocess_image(boxes[i], scores[i], cls[i], infos[i], conf, iou, max_det) for i in range(n)]
    if all(k in outputs for k in GRAPH_NMS_OUTPUTS):
        boxes, scores, cls, num = (outputs[k] for k in GRAPH_NMS_OUTPUTS)
        n = boxes.shape[0]
        infos = list(infos) if infos is not None else [None] * n
        dets = []
        counts = np.asarray(num).reshape(n, -1)[:, 0]  # num_dets is [N, 1] (or [N])
        for i in range(n):
            k = min(max(int(counts[i]), 0), boxes.shape[1])  # never a negative slice from the end
            b, s, c = boxes[i, :k], scores[i, :k], cls[i, :k]
            m = s >= conf
            b, s, c = b[m][:max_det], s[m][:max_det], c[m][:max_det]
            info = infos[i]
            if info is not None:
                b = info.to_frame(b)
            dets.append(Detections(b.astype(np.float32), s.astype(np.float32), c.astype(np.int32)))
        return dets
    raise KeyError(f"outputs {sorted(outputs)} match neither {HOST_NMS_OUTPUTS} nor {GRAPH_NMS_OUTPUTS}")


def postprocess_with(
    outputs: Mapping[str, np.ndarray], infos: Sequence[LetterboxInfo | None] | None, post: PostprocessConfig
) -> list[Detections]:
    """:func:`postprocess` with the thresholds of a :class:`~detnet_trt.core.config.PostprocessConfig`."""
    return postprocess(outputs, infos, post.conf, post.iou, post.max_det)
