"""Anchors, box decoding and clipping as the public DetNet_pytorch FPN does them at test time.

Boxes are ``(x1, y1, x2, y2)`` float32 in input pixels with that code's convention: a box's
width is ``x2 - x1 + 1`` and its centre ``x1 + 0.5 * width``; clipping keeps coordinates in
``[0, W - 1]`` x ``[0, H - 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# TensorRT's TopK layer takes K <= 3840 (the operator reference of TensorRT 8.6 to 10.x).
TOPK_LIMIT = 3840


def level_anchors(size: float, ratios: Sequence[float], shape: tuple[int, int], stride: int) -> np.ndarray:
    """Anchors of one pyramid level, ``(H * W * len(ratios), 4)`` float64, row-major over the
    feature map, ratios fastest: centre ``(x * stride, y * stride)`` (no half-stride offset),
    width ``size * sqrt(ratio)``, height ``size / sqrt(ratio)``, corners at centre -/+ half size."""
    r = np.asarray(ratios, dtype=np.float64)
    widths, heights = size * np.sqrt(r), size / np.sqrt(r)
    ys = np.arange(shape[0], dtype=np.float64) * stride
    xs = np.arange(shape[1], dtype=np.float64) * stride
    cx = np.broadcast_to(xs[None, :, None], (shape[0], shape[1], len(r)))
    cy = np.broadcast_to(ys[:, None, None], (shape[0], shape[1], len(r)))
    w = np.broadcast_to(widths, cx.shape)
    h = np.broadcast_to(heights, cy.shape)
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1).reshape(-1, 4)


def pyramid_anchors(
    sizes: Sequence[float], ratios: Sequence[float], shapes: Sequence[tuple[int, int]], strides: Sequence[int]
) -> torch.Tensor:
    """All levels' anchors concatenated, float32 ``(A, 4)`` (computed in float64, then cast)."""
    parts = [level_anchors(s, ratios, sh, st) for s, sh, st in zip(sizes, shapes, strides)]
    return torch.from_numpy(np.concatenate(parts).astype(np.float32))


def decode(boxes: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Apply ``(dx, dy, dw, dh)`` deltas (``... x 4``) to ``boxes`` (broadcastable ``... x 4``)."""
    widths = boxes[..., 2] - boxes[..., 0] + 1.0
    heights = boxes[..., 3] - boxes[..., 1] + 1.0
    ctr_x = boxes[..., 0] + 0.5 * widths
    ctr_y = boxes[..., 1] + 0.5 * heights
    pred_ctr_x = deltas[..., 0] * widths + ctr_x
    pred_ctr_y = deltas[..., 1] * heights + ctr_y
    pred_w = torch.exp(deltas[..., 2]) * widths
    pred_h = torch.exp(deltas[..., 3]) * heights
    return torch.stack(
        [pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h, pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h],
        dim=-1,
    )


def clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Clamp x to ``[0, width - 1]`` and y to ``[0, height - 1]``."""
    x1 = boxes[..., 0].clamp(0.0, float(width - 1))
    y1 = boxes[..., 1].clamp(0.0, float(height - 1))
    x2 = boxes[..., 2].clamp(0.0, float(width - 1))
    y2 = boxes[..., 3].clamp(0.0, float(height - 1))
    return torch.stack([x1, y1, x2, y2], dim=-1)


def topk_sorted(scores: torch.Tensor, k: int, limit: int = TOPK_LIMIT) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.topk(k, dim=1)`` (``N x B`` -> ``N x k``, descending) as TopK layers of at most
    ``limit``: each round takes the next ``limit`` and masks them to -inf for the next round, so
    the result equals one large top-k (up to the order of equal scores)."""
    if k <= limit:
        return scores.topk(k, dim=1)
    values, indices, work, left = [], [], scores, k
    while left > 0:
        v, i = work.topk(min(limit, left), dim=1)
        values.append(v)
        indices.append(i)
        left -= v.shape[1]
        if left > 0:
            work = work.scatter(1, i, torch.full_like(v, float("-inf")))
    return torch.cat(values, dim=1), torch.cat(indices, dim=1)


def fpn_levels(rois: torch.Tensor, canonical: float = 224.0, lowest: int = 2, highest: int = 5) -> torch.Tensor:
    """Pyramid level of each RoI (``... x 4``), as int64 ``0 .. highest - lowest``:
    ``floor(log2(sqrt(w * h) / 224) + 4)`` with ``+1`` widths, clamped to ``[2, 5]``, minus 2."""
    h = rois[..., 3] - rois[..., 1] + 1
    w = rois[..., 2] - rois[..., 0] + 1
    level = torch.floor(torch.log(torch.sqrt(h * w) / canonical) / float(np.log(2)) + 4)
    return level.clamp(float(lowest), float(highest)).long() - lowest
