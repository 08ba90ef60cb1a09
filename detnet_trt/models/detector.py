"""DetNetDetector: uint8 images in; training losses or per-image top-K candidates out.

``forward(images, targets=None)``:

- ``images``: uint8, N x 3 x H x W (``layout == "nchw"``) or N x H x W x 3 (``"nhwc"``), BGR
  as OpenCV delivers; cast, BGR -> RGB and ImageNet mean/std normalisation happen here, so the
  exported graph takes raw frames.
- training mode with ``targets`` (list of ``{"boxes": (M, 4) float xyxy input pixels,
  "labels": (M,) int64}``): dict of losses ``loss_cls``, ``loss_box``, ``loss_ctr`` and ``loss``.
- otherwise: ``(boxes (N, K, 4) float32 xyxy input pixels, scores (N, K) float32 sorted
  descending, class_ids (N, K) int32)`` with ``K = min(topk, locations x classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import InputError
from .assign import centerness_targets, fcos_targets, level_ranges
from .backbone import STAGE_NAMES, DetNetBackbone
from .base import FrameDetector
from .config import DetNetConfig
from .fpn import DetNetFPN
from .head import DenseHead, decode_boxes, flatten_outputs, topk_candidates
from .losses import giou_loss, sigmoid_focal_loss


class DetNetDetector(FrameDetector):
    """DetNet backbone + DetNet-FPN + FCOS-style dense head (see :mod:`.head` for why)."""

    def __init__(self, config: DetNetConfig, class_names: list[str] | None = None) -> None:
        super().__init__(config, class_names)
        self.config = config
        lowest = min(int(lv[1:]) for lv in config.head_levels)
        self.backbone = DetNetBackbone(config, out_features=tuple(n for n in STAGE_NAMES if int(n[1:]) >= lowest))
        self.fpn = DetNetFPN(self.backbone.output_shape(), config.fpn_channels, config.head_levels)
        self.head = DenseHead(
            self.fpn.output_shape(),
            config.num_classes,
            num_convs=config.head_convs,
            norm=config.head_norm,
            level_sizes=config.level_sizes,
            prior_prob=config.prior_prob,
        )

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward_raw(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Dense per-level head outputs (cls logits, ltrb pixels, centerness logits)."""
        return self.head(self.fpn(self.backbone(self.normalize(images))))

    def forward(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw = self.forward_raw(images)
        cls, ltrb, ctr, points = flatten_outputs(raw, self.head.strides)
        if self.training and targets is not None:
            return self.losses(cls, ltrb, ctr, points, raw, targets)
        scores = torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr))
        boxes = decode_boxes(points, ltrb)
        return topk_candidates(boxes, scores, self.topk)

    # --- training ---------------------------------------------------------------------------
    def _level_tables(
        self, raw: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ranges, radii = [], []
        for (cls, _, _), (lo, hi), norm in zip(raw, level_ranges(self.head.sizes), self.head.norms):
            n = cls.shape[-2] * cls.shape[-1]
            ranges.append(torch.tensor([[lo, hi]], device=device).expand(n, 2))
            radii.append(torch.full((n,), self.config.center_radius * norm, device=device))
        return torch.cat(ranges), torch.cat(radii)

    def losses(
        self,
        cls: torch.Tensor,
        ltrb: torch.Tensor,
        ctr: torch.Tensor,
        points: torch.Tensor,
        raw: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        if len(targets) != cls.shape[0]:
            raise InputError(f"{len(targets)} targets for a batch of {cls.shape[0]} images")
        ranges, radii = self._level_tables(raw, cls.device)
        labels, boxes = [], []
        for t in targets:
            b = torch.as_tensor(t["boxes"], dtype=torch.float32, device=cls.device).reshape(-1, 4)
            lab = torch.as_tensor(t["labels"], dtype=torch.long, device=cls.device).reshape(-1)
            if b.shape[0] != lab.shape[0]:
                raise InputError(f"target has {b.shape[0]} boxes but {lab.shape[0]} labels")
            if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
                raise InputError(f"target labels must be in 0..{self.num_classes - 1}, got {lab.tolist()}")
            la, bx = fcos_targets(points, ranges, radii, b, lab)
            labels.append(la)
            boxes.append(bx)
        labels_t = torch.stack(labels)  # (N, L)
        boxes_t = torch.stack(boxes)  # (N, L, 4)
        pos = labels_t >= 0
        num_pos = max(float(pos.sum()), 1.0)
        onehot = torch.zeros_like(cls)
        onehot[pos] = nn.functional.one_hot(labels_t[pos], self.num_classes).to(cls.dtype)
        cfg = self.config
        loss_cls = sigmoid_focal_loss(cls, onehot, cfg.focal_alpha, cfg.focal_gamma) / num_pos
        if bool(pos.any()):
            pts = points.unsqueeze(0).expand_as(boxes_t[..., :2])[pos]
            ctr_t = centerness_targets(pts, boxes_t[pos])
            pred_boxes = decode_boxes(pts, ltrb[pos])
            loss_box = (giou_loss(pred_boxes, boxes_t[pos]) * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
            loss_ctr = (
                nn.functional.binary_cross_entropy_with_logits(ctr[pos].squeeze(-1), ctr_t, reduction="sum") / num_pos
            )
        else:  # keep the graph connected so every parameter gets a (zero) gradient
            loss_box = ltrb.sum() * 0.0
            loss_ctr = ctr.sum() * 0.0
        total = loss_cls + cfg.box_loss_weight * loss_box + cfg.ctr_loss_weight * loss_ctr
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr, "loss": total}
