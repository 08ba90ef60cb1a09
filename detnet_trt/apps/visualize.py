"""Drawing detections on frames (annotated images, the camera window, recorded video)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..runtime.postprocess import Detections


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class id."""
    hue = (int(class_id) * 47) % 180
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(
    frame: np.ndarray,
    dets: Detections,
    class_names: Sequence[str] | None = None,
    copy: bool = True,
    thickness: int = 2,
    track_ids: Sequence[int | None] | None = None,
) -> np.ndarray:
    """Draw boxes with ``class score`` labels on a BGR ``frame`` (a copy unless ``copy=False``).

    With ``track_ids`` (one per detection, ``None``: not tracked yet) the label reads ``#id class
    score`` and a tracked box takes its track's colour."""
    img = frame.copy() if copy else frame
    scale = max(0.4, min(img.shape[:2]) / 800)
    ids = list(track_ids) if track_ids is not None else [None] * len(dets)
    for box, score, cid, tid in zip(dets.boxes, dets.scores, dets.class_ids, ids):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        color = class_color(int(cid) if tid is None else int(tid))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        name = class_names[int(cid)] if class_names is not None and 0 <= int(cid) < len(class_names) else str(int(cid))
        label = f"{name} {float(score):.2f}" if tid is None else f"#{tid} {name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(y1, th + base)
        cv2.rectangle(img, (x1, ty - th - base), (x1 + tw, ty), color, -1)
        cv2.putText(img, label, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def draw_text(frame: np.ndarray, lines: Sequence[str], origin: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Draw status lines (FPS, per-stage timings) in the top-left corner, in place."""
    x, y = origin
    for line in lines:
        (tw, th), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(frame, (x - 2, y - 2), (x + tw + 2, y + th + base), (0, 0, 0), -1)
        cv2.putText(frame, line, (x, y + th), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        y += th + base + 4
    return frame
