"""The paper's detector: DetNet-59 + FPN + Faster R-CNN (RPN, pyramid RoIAlign, box head).

The network and its test-time path are those of the public DetNet_pytorch implementation
(``lib/model/fpn/fpn.py``, ``detnet_backbone.py``, ``rpn/``, ``roi_align/``, ``test_net.py``),
so that its published checkpoints (:func:`detnet_trt.models.load_detnet_pytorch_fpn`) give
their detections here:

- backbone: DetNet-59 (:class:`~detnet_trt.models.backbone.DetNetBackbone`, stride in the 3x3
  conv); input: uint8 BGR, converted to RGB and normalised with the ImageNet mean / std of
  0-255 pixels (their loader reads RGB with ``scipy.misc.imread`` and applies
  ``(x / 255 - mean) / std``).
- FPN: ``P6 = top(C6)``, ``P5 = lat(C5) + P6``, ``P4 = lat(C4) + P5`` (stride 16 all three),
  ``P3 = smooth(up(P4) + lat(C3))``, ``P2 = smooth(up(P3) + lat(C2))``, ``up`` bilinear with
  PyTorch 0.3's ``align_corners=True``.
- RPN on P2 ... P6 (shared 3x3 conv with 512 channels, 3 anchors a position): anchors of size
  32, 64, 128, 256, 512 at strides 4, 8, 16, 16, 16 (``test_net.py`` sets these), ratios 0.5, 1,
  2. The foreground score is the one their test code computes: the 6 logits ``c0 .. c5`` of a
  position are soft-maxed in pairs ``(a, a + 3)`` and then read in pairs ``(2k, 2k + 1)``, so
  anchors 0, 1, 2 score ``sigmoid(c1 - c4)``, ``sigmoid(c3 - c0)``, ``sigmoid(c5 - c2)`` (kept
  here as their reshape / softmax / reshape). Deltas decoded with ``+1`` widths, clipped to the input, the 6000 best (over all
  levels) go to NMS at IoU 0.7 (``+1`` IoU), 300 proposals kept, zero boxes after the last.
- RoIs to levels P2 ... P5 by ``floor(4 + log2(sqrt(wh) / 224))``, RoIAlign of their kernel
  (:mod:`.two_stage.roi_align`), a ``P x P`` conv (the checkpoints' ``POOLING_SIZE`` 14) and a
  1x1 conv to 1024 (both with ReLU), class softmax and class-specific deltas (stds 0.1, 0.1,
  0.2, 0.2), decoded and clipped.
- detections as ``test_net.py``: per foreground class, scores above 0, NMS at IoU 0.3 (``+1``
  IoU), then the 100 best over all classes.

``forward(images)`` returns the package's in-graph-NMS contract (:mod:`detnet_trt.core.meta`):
``det_boxes`` ``N x D x 4`` (input pixels), ``det_scores`` ``N x D``, ``det_class_ids`` int32
(0-based over the foreground classes) and ``num_dets`` int32, D = ``max_det``. Training this
detector is not provided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InputError
from .backbone import DetNetBackbone
from .base import FrameDetector
from .config import DetNetConfig
from .two_stage.boxes import clip, decode, fpn_levels, pyramid_anchors, topk_sorted
from .two_stage.nms import nms_kept_scores, select_kept
from .two_stage.roi_align import pyramid_roi_align


@dataclass
class DetNetFPNConfig(DetNetConfig):
    """DetNet-59 FPN as DetNet_pytorch trains and tests it (``cfgs/detnet59.yml``, ``test_net.py``).

    ``num_classes`` counts the foreground classes (the network has one more output, background).
    ``input_size`` default (608, 800): their test scale is a short side of 600 with no cap on the
    long side, which makes the 4:3 VOC and COCO images 600 x 800; 608 x 800 is the nearest size
    of multiples of 32 that holds it, so a letterboxed 4:3 frame is scaled exactly as they test.
    The dense-head fields of :class:`DetNetConfig` are unused.
    """

    name: str = "detnet59_fpn"
    num_classes: int = 20
    input_size: tuple[int, int] = (608, 800)
    topk: int = 300  # proposals per image (their TEST.RPN_POST_NMS_TOP_N)
    pool_size: int = 14
    rpn_pre_nms_topk: int = 6000
    rpn_nms_iou: float = 0.7
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    anchor_strides: tuple[int, ...] = (4, 8, 16, 16, 16)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    box_stds: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)
    det_conf: float = 0.0
    det_iou: float = 0.3
    max_det: int = 100

    def __post_init__(self) -> None:
        self.anchor_sizes = tuple(float(v) for v in self.anchor_sizes)
        self.anchor_strides = tuple(int(v) for v in self.anchor_strides)
        self.anchor_ratios = tuple(float(v) for v in self.anchor_ratios)
        self.box_stds = tuple(float(v) for v in self.box_stds)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()

        def bad(what: str, got: object, expected: str) -> InputError:
            return InputError(f"model config {self.name!r}: {what} is {got!r}, expected {expected}")

        h, w = self.input_size
        if h < 32 or w < 32:
            raise bad("input_size", self.input_size, "H and W of at least 32 (P4 must be 2 x 2 or larger)")
        if self.pool_size < 1:
            raise bad("pool_size", self.pool_size, "at least 1")
        if len(self.anchor_sizes) != 5 or len(self.anchor_strides) != 5:
            raise bad("anchor_sizes / anchor_strides", (self.anchor_sizes, self.anchor_strides), "5 values each (P2..P6)")
        if len(self.box_stds) != 4:
            raise bad("box_stds", self.box_stds, "4 values")
        if self.topk < 1 or self.rpn_pre_nms_topk < 1 or self.max_det < 1:
            raise bad("topk / rpn_pre_nms_topk / max_det", (self.topk, self.rpn_pre_nms_topk, self.max_det), "at least 1")
        if not 0.0 <= self.det_conf < 1.0 or not 0.0 < self.det_iou <= 1.0 or not 0.0 < self.rpn_nms_iou <= 1.0:
            raise bad("det_conf / det_iou / rpn_nms_iou", (self.det_conf, self.det_iou, self.rpn_nms_iou), "0 <= conf < 1, 0 < iou <= 1")


class FPNNeck(nn.Module):
    """Their top-down path over C2 ... C6 (see the module docstring); returns P2 ... P6."""

    def __init__(self, channels: tuple[int, ...], width: int = 256) -> None:
        super().__init__()
        c2, c3, c4, c5, c6 = channels
        self.top = nn.Conv2d(c6, width, 1)
        self.lat5 = nn.Conv2d(c5, width, 1)
        self.lat4 = nn.Conv2d(c4, width, 1)
        self.lat3 = nn.Conv2d(c3, width, 1)
        self.lat2 = nn.Conv2d(c2, width, 1)
        self.smooth3 = nn.Conv2d(width, width, 3, padding=1)
        self.smooth2 = nn.Conv2d(width, width, 3, padding=1)

    @staticmethod
    def _up_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = (int(y.shape[2]), int(y.shape[3]))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True) + y

    def forward(self, c: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        p6 = self.top(c["c6"])
        p5 = self.lat5(c["c5"]) + p6
        p4 = self.lat4(c["c4"]) + p5
        p3 = self.smooth3(self._up_add(p4, self.lat3(c["c3"])))
        p2 = self.smooth2(self._up_add(p3, self.lat2(c["c2"])))
        return [p2, p3, p4, p5, p6]


class RPNHead(nn.Module):
    """Shared 3x3 conv (ReLU), 2 logits and 4 deltas per anchor; their score pairing."""

    def __init__(self, width: int = 256, hidden: int = 512, anchors: int = 3) -> None:
        super().__init__()
        self.anchors = anchors
        self.conv = nn.Conv2d(width, hidden, 3, padding=1)
        self.cls = nn.Conv2d(hidden, 2 * anchors, 1)
        self.box = nn.Conv2d(hidden, 4 * anchors, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores N x A, deltas N x A x 4)`` over all levels, level by level, row-major."""
        scores, deltas = [], []
        for f in feats:
            t = F.relu(self.conv(f))
            logits = self.cls(t)
            n, c, h, w = logits.shape
            # their reshape(N, 2, 3H, W) -> softmax over dim 1 -> reshape back
            prob = F.softmax(logits.reshape(-1, 2, (c // 2) * h, w), dim=1).reshape(-1, c, h, w)
            scores.append(prob.permute(0, 2, 3, 1).reshape(-1, h * w * self.anchors, 2)[:, :, 1])
            deltas.append(self.box(t).permute(0, 2, 3, 1).reshape(-1, h * w * self.anchors, 4))
        return torch.cat(scores, dim=1), torch.cat(deltas, dim=1)


class BoxHead(nn.Module):
    """``P x P`` conv and 1x1 conv to 1024 (ReLU each; their ``RCNN_top``, whose spatial mean of
    a 1 x 1 map is the identity), class logits and class-specific deltas."""

    def __init__(self, width: int, pool: int, num_outputs: int, hidden: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Conv2d(width, hidden, pool, stride=pool)
        self.fc7 = nn.Conv2d(hidden, hidden, 1)
        self.cls = nn.Linear(hidden, num_outputs)
        self.box = nn.Linear(hidden, 4 * num_outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # fc6's kernel covers the whole P x P input, fc7 is 1x1: both are matrix products, computed
        # (and exported, as Gemm) as such; ONNX Runtime runs a 14 x 14 conv to 1 x 1 several times slower
        x = F.relu(F.linear(x.flatten(1), self.fc6.weight.flatten(1), self.fc6.bias))
        x = F.relu(F.linear(x, self.fc7.weight.flatten(1), self.fc7.bias))
        return F.softmax(self.cls(x), dim=1), self.box(x)


class DetNetFPNDetector(FrameDetector):
    """DetNet-59 FPN two-stage detector; see the module docstring for the contract."""

    def __init__(self, config: DetNetFPNConfig, class_names: list[str] | None = None) -> None:
        super().__init__(config, class_names, classes="foreground classes")
        self.config = config
        self.backbone = DetNetBackbone(config)
        chans = tuple(s.channels for s in self.backbone.output_shape().values())
        self.neck = FPNNeck(chans, config.fpn_channels)
        self.rpn = RPNHead(config.fpn_channels, anchors=len(config.anchor_ratios))
        self.roi_head = BoxHead(config.fpn_channels, config.pool_size, config.num_classes + 1)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _more_meta(self) -> dict[str, Any]:
        return {"nms": "onnx", "max_det": int(self.config.max_det),
                "extra": {"detector": "two_stage", "nms_conf": self.config.det_conf, "nms_iou": self.config.det_iou}}

    def to_nchw(self, images: torch.Tensor) -> torch.Tensor:
        x = super().to_nchw(images)
        h, w = int(x.shape[2]), int(x.shape[3])
        if h % 16 or w % 16 or h < 32 or w < 32:
            raise InputError(f"input {h}x{w}: the two-stage detector needs H and W multiples of 16, at least 32")
        return x

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """P2 ... P6 of a uint8 batch (the "backbone + FPN" stage)."""
        return self.neck(self.backbone(self.normalize(images)))

    def proposals(self, feats: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        """RPN + proposal layer: ``N x topk x 4`` boxes (``self.topk`` proposals), zero rows after the kept ones."""
        cfg = self.config
        scores, deltas = self.rpn(feats)
        shapes = [(int(f.shape[2]), int(f.shape[3])) for f in feats]
        anchors = pyramid_anchors(cfg.anchor_sizes, cfg.anchor_ratios, shapes, cfg.anchor_strides).to(deltas.device)
        boxes = clip(decode(anchors[None], deltas), height, width)
        k = min(cfg.rpn_pre_nms_topk, int(scores.shape[1]))
        top_scores, top_idx = topk_sorted(scores, k)
        top_boxes = torch.gather(boxes, 1, top_idx[..., None].expand(-1, -1, 4))
        shifted = top_boxes + top_boxes.new_tensor([0.0, 0.0, 1.0, 1.0])  # their +1 IoU
        kept = nms_kept_scores(shifted, top_scores, int(self.topk), cfg.rpn_nms_iou)
        _, idx, valid = select_kept(kept, int(self.topk))
        rois = torch.gather(top_boxes, 1, idx[..., None].expand(-1, -1, 4))
        return rois * valid[..., None].to(rois.dtype)

    def roi_outputs(self, feats: list[torch.Tensor], rois: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """RoI head: class probabilities ``N x R x (C + 1)`` and boxes ``N x R x (C + 1) x 4``."""
        r = int(rois.shape[1])
        pooled = pyramid_roi_align(feats[:4], rois, fpn_levels(rois), height, self.config.pool_size)
        probs, deltas = self.roi_head(pooled)
        c1 = int(probs.shape[1])
        deltas = deltas.reshape(-1, r, c1, 4) * deltas.new_tensor(self.config.box_stds)
        boxes = clip(decode(rois[:, :, None, :], deltas), height, width)
        return probs.reshape(-1, r, c1), boxes

    def detections(self, probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """Per-class NMS over the foreground classes, the ``max_det`` best: the graph outputs."""
        cfg = self.config
        r, c = int(probs.shape[1]), int(probs.shape[2]) - 1
        scores = probs[:, :, 1:].reshape(-1, r * c)
        fg = boxes[:, :, 1:, :].reshape(-1, r * c, 4)
        cls = torch.arange(c, dtype=torch.int32).repeat(r)  # candidate j is class j % C
        span = float(max(height, width) + 1)
        offset = (cls.to(fg.dtype) * span)[None, :, None]
        shifted = fg + offset + fg.new_tensor([0.0, 0.0, 1.0, 1.0])
        kept = nms_kept_scores(shifted, scores, cfg.max_det, cfg.det_iou, cfg.det_conf)
        det_scores, idx, valid = select_kept(kept, cfg.max_det)
        det_boxes = torch.gather(fg, 1, idx[..., None].expand(-1, -1, 4)) * valid[..., None].to(fg.dtype)
        det_cls = cls[idx] * valid.to(torch.int32)
        num = valid.to(fg.dtype).sum(dim=1).to(torch.int32)
        return det_boxes, det_scores, det_cls, num

    def forward(self, images: torch.Tensor, targets: object = None) -> tuple[torch.Tensor, ...]:
        if self.training or targets is not None:
            raise InputError("training the two-stage DetNet-59 FPN is not provided", "call model.eval(); import trained weights with `detnet-trt import-detnet-pytorch`")
        hw = images.shape[2:4] if self.layout == "nchw" else images.shape[1:3]
        height, width = int(hw[0]), int(hw[1])
        feats = self.features(images)
        rois = self.proposals(feats, height, width)
        probs, boxes = self.roi_outputs(feats, rois, height, width)
        return self.detections(probs, boxes, height, width)
