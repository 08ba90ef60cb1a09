"""Bottleneck residual blocks of DetNet (paper, figure 2).

One class covers the three kinds the network uses:

- the ResNet bottleneck of stages 2-4 (1x1 reduce, 3x3, 1x1 expand; a 1x1 projection shortcut
  when the shape changes, with the stride of a down-sampling block in the 3x3 conv or in the
  first 1x1 conv, see ``stride_in``);
- DetNet's **bottleneck B** (first block of stages 5 and 6): dilated 3x3 conv and a 1x1
  projection shortcut although the shape does not change, so that each new stage starts a new
  "semantic" path;
- DetNet's **bottleneck A** (other blocks of stages 5 and 6): dilated 3x3 conv, identity shortcut.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``.

    Args:
        in_channels: input channels.
        width: channels of the 1x1-reduce and 3x3 convs.
        out_channels: output channels (``expansion * width``).
        stride: 1 or 2; where it is applied depends on ``stride_in`` ("3x3" or "1x1").
        dilation: dilation (and padding) of the 3x3 conv.
        projection: use a 1x1 conv + BN shortcut (always when shape changes).
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        projection: bool = False,
        stride_in: str = "3x3",
    ) -> None:
        super().__init__()
        s1, s3 = (1, stride) if stride_in == "3x3" else (stride, 1)
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=s3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        needs_proj = projection or stride != 1 or in_channels != out_channels
        self.shortcut: nn.Module | None = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if needs_proj
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + identity)
