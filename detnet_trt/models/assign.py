"""FCOS target assignment: which ground-truth box (if any) each location learns.

A location is positive for a box when it lies inside the box's centre region (radius
``center_radius`` x the level's regression normaliser, clipped to the box) and the largest of its
four distances to the box sides falls in its level's size range; among several such boxes the
smallest wins. Size ranges come from the levels' nominal sizes: level ``i`` takes
``(size[i-1], size[i]]`` (the first from 0, the last up to infinity).
"""

from __future__ import annotations

import torch


def level_ranges(sizes: tuple[float, ...]) -> list[tuple[float, float]]:
    """Max-distance range per level from the levels' nominal sizes (ascending)."""
    lows = (0.0,) + sizes[:-1]
    highs = sizes[:-1] + (float("inf"),)
    return list(zip(lows, highs))


def fcos_targets(
    points: torch.Tensor,
    ranges: torch.Tensor,
    radii: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign one image.

    Args:
        points: (L, 2) location centres (x, y) in input pixels.
        ranges: (L, 2) allowed (low, high] of max(l, t, r, b) per location.
        radii: (L,) centre-sampling radius per location, pixels.
        boxes: (M, 4) xyxy ground truth, labels: (M,) int64 in 0..C-1; M may be 0.
    Returns:
        labels per location (L,) int64 with -1 for background, and matched boxes (L, 4).
    """
    num = points.shape[0]
    if boxes.numel() == 0:
        return torch.full((num,), -1, dtype=torch.long, device=points.device), points.new_zeros((num, 4))
    x = points[:, 0:1]
    y = points[:, 1:2]
    x0, y0, x1, y1 = (boxes[:, i][None] for i in range(4))
    ltrb = torch.stack((x - x0, y - y0, x1 - x, y1 - y), dim=2)  # (L, M, 4)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = radii[:, None]
    in_center = (
        (x > torch.max(x0, cx - r)) & (x < torch.min(x1, cx + r)) & (y > torch.max(y0, cy - r)) & (y < torch.min(y1, cy + r))
    )
    in_box = ltrb.min(dim=2).values > 0
    max_d = ltrb.max(dim=2).values
    in_range = (max_d > ranges[:, 0:1]) & (max_d <= ranges[:, 1:2])
    area = ((x1 - x0) * (y1 - y0)).expand(num, -1)
    area = torch.where(in_center & in_box & in_range, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    out_labels = torch.where(torch.isinf(best_area), torch.full_like(best, -1), labels[best])
    return out_labels, boxes[best]


def centerness_targets(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """FCOS centerness ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` for points inside boxes."""
    l = points[:, 0] - boxes[:, 0]  # noqa: E741 - FCOS notation: l, t, r, b
    t = points[:, 1] - boxes[:, 1]
    r = boxes[:, 2] - points[:, 0]
    b = boxes[:, 3] - points[:, 1]
    lr = torch.min(l, r).clamp(min=0) / torch.max(l, r).clamp(min=1e-6)
    tb = torch.min(t, b).clamp(min=0) / torch.max(t, b).clamp(min=1e-6)
    return torch.sqrt(lr * tb)
