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


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PAD = 2  # pixels of label background around the text


def label_rect(
    box: tuple[int, int, int, int], label_wh: tuple[int, int], image_wh: tuple[int, int], thickness: int
) -> tuple[int, int, int, int]:
    """Where the label of ``box`` (x1, y1, x2, y2) goes: ``(x0, y0, x1, y1)`` of its background.

    Above the box, resting on the box's top line, when it fits in the image; otherwise inside the
    box, just under its top line (so the line stays visible either way). Shifted left or up as
    needed to stay whole inside the image; ``label_wh`` larger than the image is the caller's to
    avoid (:func:`draw_detections` shrinks the text until it fits).
    """
    bx1, by1, _, _ = box
    lw, lh = label_wh
    w, h = image_wh
    half = (thickness + 1) // 2  # the box line covers y1 - half .. y1 + half
    top = by1 - half - lh
    if top < 0:  # no room above: inside, under the top line
        top = by1 + half + 1
    top = min(max(top, 0), max(h - lh, 0))
    left = min(max(bx1 - half, 0), max(w - lw, 0))
    return left, top, left + lw, top + lh


def _label_size(label: str, scale: float, max_w: int) -> tuple[float, int, int, int]:
    """``(scale, text width, text height, baseline)``, the scale shrunk until the label fits ``max_w``."""
    while True:
        (tw, th), base = cv2.getTextSize(label, _FONT, scale, 1)
        if tw + 2 * _PAD <= max_w or scale <= 0.15:
            return scale, tw, th, base
        scale *= 0.8


def label_layout(
    image_wh: tuple[int, int],
    dets: Detections,
    class_names: Sequence[str] | None = None,
    thickness: int = 2,
    track_ids: Sequence[int | None] | None = None,
) -> list[tuple[int, str, float, int, tuple[int, int, int, int]]]:
    """The labels :func:`draw_detections` draws, in drawing order (lowest score first, so the
    best detection's label ends on top): ``(index, text, font scale, baseline, rect)``."""
    w, h = image_wh
    ids = list(track_ids) if track_ids is not None else [None] * len(dets)
    scale = max(0.4, min(h, w) / 800)
    out = []
    for i in np.argsort(np.asarray(dets.scores, np.float64), kind="stable").tolist():
        cid = int(dets.class_ids[i])
        name = class_names[cid] if class_names is not None and 0 <= cid < len(class_names) else str(cid)
        tid = ids[i]
        text = f"{name} {float(dets.scores[i]):.2f}" if tid is None else f"#{tid} {name} {float(dets.scores[i]):.2f}"
        s, tw, th, base = _label_size(text, scale, w)
        bx1, by1, bx2, by2 = (int(round(float(v))) for v in dets.boxes[i])
        rect = label_rect((bx1, by1, bx2, by2), (tw + 2 * _PAD, th + base + 2 * _PAD), (w, h), thickness)
        out.append((i, text, s, base, rect))
    return out


def draw_detections(
    frame: np.ndarray,
    dets: Detections,
    class_names: Sequence[str] | None = None,
    copy: bool = True,
    thickness: int = 2,
    track_ids: Sequence[int | None] | None = None,
) -> np.ndarray:
    """Draw boxes with ``class score`` labels on a BGR ``frame`` (a copy unless ``copy=False``).

    All boxes first, then all labels, so no box line crosses a label; where labels overlap, the
    best detection's is on top. Each label sits above its box, or inside it at the top of the
    image, whole inside the image (:func:`label_rect`, :func:`label_layout`). With ``track_ids``
    (one per detection, ``None``: not tracked yet) the label reads ``#id class score`` and a
    tracked box takes its track's colour.
    """
    img = frame.copy() if copy else frame
    h, w = img.shape[:2]
    ids = list(track_ids) if track_ids is not None else [None] * len(dets)
    colors = [class_color(int(c) if t is None else int(t)) for c, t in zip(dets.class_ids, ids)]
    for box, color in zip(dets.boxes, colors):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    for i, text, scale, base, (x0, y0, x1, y1) in label_layout((w, h), dets, class_names, thickness, ids):
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colors[i], -1)
        cv2.putText(img, text, (x0 + _PAD, y1 - 1 - _PAD - base), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
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
