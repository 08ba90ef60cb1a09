"""Pure NMS ops on NumPy arrays: IoU, NMS, class-aware (batched) NMS.

Boxes are ``(M, 4)`` float32 ``xyxy`` in pixels; empty input gives empty output. OpenCV's C++
``NMSBoxesBatched`` is the fast path, a NumPy implementation the reference and the fallback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:  # OpenCV's C++ NMS is the fast path; the NumPy one is the fallback (e.g. OpenCV < 4.7)
    import cv2

    _HAVE_CV2_NMS = hasattr(cv2, "dnn") and hasattr(cv2.dnn, "NMSBoxesBatched")
    _cv2_nms: Any = cv2.dnn.NMSBoxesBatched if _HAVE_CV2_NMS else None  # takes NumPy arrays too
except ImportError:  # pragma: no cover - OpenCV is a dependency on x86
    _HAVE_CV2_NMS = False
    _cv2_nms = None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(A, 4)`` and ``(B, 4)`` xyxy boxes -> ``(A, B)``."""
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS of ``(M, 4)`` xyxy ``boxes``. Returns kept indices, highest score first (int64).

    A box is suppressed when its IoU with a kept, higher-scoring box is ``> iou_threshold``; equal
    scores keep their input order. A box with zero width or height never suppresses and is never
    suppressed (its IoU with anything is 0). Uses OpenCV's C++ ``cv2.dnn.NMSBoxes`` when available
    (about 6x faster on 1,000 candidates, see benchmarks/bench_nms.py), else :func:`_nms_numpy`.
    """
    return batched_nms(boxes, scores, np.zeros((boxes.shape[0],), np.int32), iou_threshold)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Same rules as :func:`nms`, per class. Returns kept indices, highest score first (int64).
    Picks OpenCV's ``cv2.dnn.NMSBoxesBatched`` when available, else :func:`_batched_nms_numpy`;
    tests check both against a plain reference implementation.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    if _HAVE_CV2_NMS:
        return _batched_nms_cv2(boxes, scores, class_ids, iou_threshold)
    return _batched_nms_numpy(boxes, scores, class_ids, iou_threshold)


def _nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Vectorised greedy NMS: each step takes the best remaining box and drops its overlaps."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    boxes = boxes.astype(np.float64, copy=False)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def _batched_nms_numpy(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Offsets every class into its own coordinate range (as torchvision's ``batched_nms`` does)
    and runs one :func:`_nms_numpy`, in float64 so the offsets cost no precision."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    b = boxes.astype(np.float64)
    span = float(b.max() - min(float(b.min()), 0.0)) + 1.0
    return _nms_numpy(b + class_ids.astype(np.float64)[:, None] * span, scores, iou_threshold)


def _batched_nms_cv2(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``cv2.dnn.NMSBoxesBatched`` with the rules of :func:`nms`.

    OpenCV wants ``xywh`` boxes and scores ``> score_threshold >= 0``, treats two zero-area boxes
    as overlapping fully, and its sort need not keep ties in input order. So it gets rank scores
    (M, M-1, ..., 1 in the stable descending order of ``scores``) and only boxes of positive area;
    zero-area boxes are kept and merged back in score order.
    """
    m = boxes.shape[0]
    order = np.argsort(-scores, kind="stable")
    rank_scores = np.empty((m,), np.float32)
    rank_scores[order] = np.arange(m, 0, -1, dtype=np.float32)
    xywh = boxes.astype(np.float32)  # a copy
    xywh[:, 2:] -= xywh[:, :2]
    valid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    if valid.all():
        kept = _cv2_nms(xywh, rank_scores, class_ids.astype(np.int32), 0.0, float(iou_threshold))
        return np.asarray(kept, np.int64).reshape(-1)
    idx = np.flatnonzero(valid)
    kept = np.zeros((0,), np.int64)
    if idx.size:
        sub = _cv2_nms(
            xywh[idx], rank_scores[idx], class_ids[idx].astype(np.int32), 0.0, float(iou_threshold)
        )
        kept = idx[np.asarray(sub, np.int64).reshape(-1)]
    kept = np.concatenate([kept, np.flatnonzero(~valid)])
    return kept[np.argsort(-rank_scores[kept], kind="stable")].astype(np.int64)
