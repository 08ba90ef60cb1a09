"""Dense one-stage anchor-free head (FCOS-style) with box decoding and a per-image top-K.

Why FCOS-style (anchor-free, one prediction per location) rather than RetinaNet anchors:

- DetNet-FPN has three levels (P4, P5, P6) at the same stride 16. Anchor-free assignment by
  object size (each level covers a size range, here from ``level_sizes``, the paper's anchor
  scales 32 ... 512 for P2 ... P6) handles same-stride levels without any change, and a level's
  box regression is normalised by its nominal size rather than by its stride.
- One prediction per location (instead of 9 anchors) gives a 9x smaller dense output and a 9x
  smaller top-K input, which is what the exported graph and TensorRT's TopK then work on.
- Inference is only Conv / ReLU / Sigmoid / Mul / Sqrt / Concat / Reshape / Transpose / TopK /
  GatherElements: every op TensorRT 8.6 parses, no data-dependent shapes except TopK, no
  Python control flow on tensor values.

Convolution towers are shared across levels (as FCOS); BatchNorm is per level (statistics of
different levels differ), which TensorRT folds into the convs; no GroupNorm, which exports to a
reshape/InstanceNorm chain that deploys and quantizes less well. Scores are FCOS's
``sqrt(sigmoid(cls) * sigmoid(centerness))``.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from .backbone import ShapeSpec


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class DenseHead(nn.Module):
    """Per level: class logits (N, C, H, W), box distances l/t/r/b in pixels (N, 4, H, W) and
    centerness logits (N, 1, H, W), built from the neck's ShapeSpecs."""

    def __init__(
        self,
        input_shapes: dict[str, ShapeSpec],
        num_classes: int,
        *,
        num_convs: int = 4,
        norm: str = "bn",
        level_sizes: dict[str, float],
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        chans = {s.channels for s in input_shapes.values()}
        if len(chans) != 1:
            raise ValueError(f"a shared head needs equal channels on every level, got {chans}")
        c = chans.pop()
        self.levels = tuple(input_shapes)
        self.strides = tuple(s.stride for s in input_shapes.values())
        # regression normaliser per level: nominal object size / 8 (== stride in a plain FPN)
        self.norms = tuple(level_sizes[n] / 8.0 for n in self.levels)
        self.sizes = tuple(level_sizes[n] for n in self.levels)
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1, bias=norm == "none") for _ in range(num_convs))
        self.box_convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1, bias=norm == "none") for _ in range(num_convs))

        def norms() -> nn.ModuleList:
            return nn.ModuleList(
                nn.ModuleList(nn.BatchNorm2d(c) if norm == "bn" else nn.Identity() for _ in range(num_convs))
                for _ in self.levels
            )

        self.cls_norms = norms()
        self.box_norms = norms()
        self.relu = nn.ReLU(inplace=True)
        self.cls_logits = nn.Conv2d(c, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(c, 4, 3, padding=1)
        self.ctr_pred = nn.Conv2d(c, 1, 3, padding=1)
        self.scales = nn.ModuleList(_Scale() for _ in self.levels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        bias = self.cls_logits.bias
        if bias is not None:
            nn.init.constant_(bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Returns per level ``(cls_logits, box_ltrb_pixels, ctr_logits)``."""
        out = []
        for i, name in enumerate(self.levels):
            x = feats[name]
            c, b = x, x
            cls_norms = cast(nn.ModuleList, self.cls_norms[i])
            box_norms = cast(nn.ModuleList, self.box_norms[i])
            for conv, bn in zip(self.cls_convs, cls_norms):
                c = self.relu(bn(conv(c)))
            for conv, bn in zip(self.box_convs, box_norms):
                b = self.relu(bn(conv(b)))
            ltrb = torch.relu(self.scales[i](self.box_pred(b))) * self.norms[i]
            out.append((self.cls_logits(c), ltrb, self.ctr_pred(b)))
        return out


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) -> (N, H*W, K)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def locations(feat: torch.Tensor, stride: int) -> torch.Tensor:
    """Centres of the cells of a (N, C, H, W) map, in input pixels: (H*W, 2) as (x, y)."""
    h, w = feat.shape[-2:]
    ys = (torch.arange(h, dtype=torch.float32, device=feat.device) + 0.5) * stride
    xs = (torch.arange(w, dtype=torch.float32, device=feat.device) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)


def flatten_outputs(
    outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], strides: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate levels: cls (N, L, C), ltrb (N, L, 4), ctr (N, L, 1), points (L, 2)."""
    cls = torch.cat([_flat(o[0]) for o in outputs], dim=1)
    ltrb = torch.cat([_flat(o[1]) for o in outputs], dim=1)
    ctr = torch.cat([_flat(o[2]) for o in outputs], dim=1)
    pts = torch.cat([locations(o[0], s) for o, s in zip(outputs, strides)], dim=0)
    return cls, ltrb, ctr, pts


def decode_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Points (L, 2) + distances (N, L, 4) -> boxes (N, L, 4) xyxy, in input pixels."""
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1)


def topk_candidates(
    boxes: torch.Tensor, scores: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image top-K over all (location, class) pairs.

    Args:
        boxes: (N, L, 4); scores: (N, L, C); k: constant, clamped to L * C.
    Returns:
        boxes (N, K, 4) float32, scores (N, K) float32 sorted descending, class ids (N, K) int32.
    """
    num_classes = scores.shape[-1]
    flat = scores.flatten(1)
    k = min(int(k), int(flat.shape[1]))
    top_scores, idx = torch.topk(flat, k, dim=1, largest=True, sorted=True)
    loc = torch.div(idx, num_classes, rounding_mode="trunc")  # idx >= 0: trunc == floor
    cls = idx - loc * num_classes
    top_boxes = torch.gather(boxes, 1, loc.unsqueeze(-1).expand(-1, -1, 4))
    return top_boxes, top_scores, cls.to(torch.int32)
