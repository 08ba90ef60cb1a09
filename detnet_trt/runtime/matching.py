"""One-to-one matching of two sets of detections (``detnet-trt compare``, ``build --verify``).

:func:`match_detections` pairs B's detections, in score order, each with the unmatched detection
of A of the same class and the highest IoU at or above the threshold (greedy, like COCO's
matching of detections to ground truth).
"""

from __future__ import annotations

import numpy as np

from .nms import box_iou
from .postprocess import Detections

MATCH_IOU = 0.5


def match_detections(a: Detections, b: Detections, iou_threshold: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matches ``(i_a, i_b, iou)``: B's detections in score order each take the
    unmatched A detection of the same class with the highest IoU >= ``iou_threshold``."""
    if len(a) == 0 or len(b) == 0:
        return []
    ious = box_iou(b.boxes.astype(np.float32), a.boxes.astype(np.float32))  # B x A
    same = b.class_ids[:, None].astype(np.int64) == a.class_ids[None, :].astype(np.int64)
    ious = np.where(same, ious, -1.0)
    taken = np.zeros(len(a), bool)
    pairs = []
    for j in np.argsort(-b.scores, kind="stable"):
        row = np.where(taken, -1.0, ious[j])
        i = int(np.argmax(row))
        if row[i] >= iou_threshold:
            taken[i] = True
            pairs.append((i, int(j), float(row[i])))
    return pairs


__all__ = ["MATCH_IOU", "match_detections"]
