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
from ..core.meta import IMAGENET_MEAN, IMAGENET_STD, ModelMeta
from .assign import centerness_targets, fcos_targets, level_ranges
from .backbone import STAGE_NAMES, DetNetBackbone
from .config import DetNetConfig
from .fpn import DetNetFPN
from .head import DenseHead, decode_boxes, flatten_outputs, topk_candidates
from .losses import giou_loss, sigmoid_focal_loss


class DetNetDetector(nn.Module):
    """DetNet backbone + DetNet-FPN + FCOS-style dense head (see :mod:`.head` for why)."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    bgr_to_rgb: torch.Tensor

    def __init__(self, config: DetNetConfig, class_names: list[str] | None = None) -> None:
        super().__init__()
        if class_names is None:
            class_names = [f"class_{i}" for i in range(config.num_classes)]
        if len(class_names) != config.num_classes:
            raise InputError(
                f"{len(class_names)} class names given for a model with {config.num_classes} classes",
                "pass one name per class",
            )
        self.config = config
        self.name = config.name
        self.class_names = list(class_names)
        self.input_size = config.input_size
        self.layout = config.layout
        self.topk = config.topk
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
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0]), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def meta(self) -> ModelMeta:
        return ModelMeta(
            model=self.name,
            class_names=list(self.class_names),
            input_size=self.input_size,
            layout=self.layout,
            topk=int(self.topk),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 BGR in ``self.layout`` -> float32 normalised RGB, N x 3 x H x W."""
        if images.dim() != 4:
            raise InputError(f"images must be 4-D ({self.layout}), got shape {tuple(images.shape)}")
        # Cast first: TensorRT 8.6 allows a uint8 network input to feed nothing but a Cast.
        x = images.float()
        x = x.permute(0, 3, 1, 2) if self.layout == "nhwc" else x
        if x.shape[1] != 3:
            raise InputError(
                f"images must have 3 channels in layout {self.layout!r}, got shape {tuple(images.shape)}",
                "set model.layout to match the input",
            )
        x = x.index_select(1, self.bgr_to_rgb)
        return (x - self.pixel_mean) / self.pixel_std

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
