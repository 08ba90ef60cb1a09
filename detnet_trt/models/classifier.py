"""Classification form of DetNet: backbone + global average pool + fully connected layer.

This is the network the paper counts (4.8 GFLOPs for DetNet-59 at 224x224) and the one whose
ImageNet weights the public DetNet_pytorch checkpoint holds.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import DetNetBackbone
from .config import DetNet59Config, DetNetConfig


class DetNetClassifier(nn.Module):
    """``fc(avgpool(backbone(x)["c6"]))``: N x 3 x H x W float (normalised RGB) -> N x classes logits."""

    def __init__(self, config: DetNetConfig | None = None, num_classes: int = 1000) -> None:
        super().__init__()
        self.config = config or DetNet59Config()
        self.backbone = DetNetBackbone(self.config, out_features=("c6",))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)["c6"]
        return self.fc(torch.flatten(self.avgpool(x), 1))
