"""The DetNet backbone (Li et al., arXiv:1804.06215, section 3 and figure 2).

Stage 1 is the ResNet stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool); stages 2-4 are ResNet
bottleneck stages (strides 4, 8, 16); stages 5 and 6 keep the spatial size at 1/16 and use
dilated bottlenecks (first block: bottleneck B with a 1x1 projection shortcut; the others:
bottleneck A with an identity shortcut). Module names follow the public DetNet_pytorch layout
(``conv1``, ``bn1``, ``layer1`` ... ``layer5`` for stages 2 ... 6) so its weights map 1:1.

The backbone declares its outputs as data (:meth:`DetNetBackbone.output_shape`): the FPN and
the head are built from that declaration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Bottleneck
from .config import DetNetConfig

STAGE_NAMES = ("c2", "c3", "c4", "c5", "c6")
_STAGE_STRIDES = (1, 2, 2, 1, 1)  # stride of the first block of stages 2..6
_DILATED = (False, False, False, True, True)


@dataclass(frozen=True)
class ShapeSpec:
    """One output of a backbone or neck: its name, channel count and stride w.r.t. the input."""

    name: str
    channels: int
    stride: int


class DetNetBackbone(nn.Module):
    """DetNet feature extractor; ``forward(x)`` returns ``{"c2": ..., ..., "c6": ...}``.

    ``out_features`` selects which stages are returned (all five by default); the later
    stages are still computed when a later one is asked for.
    """

    def __init__(self, config: DetNetConfig, out_features: tuple[str, ...] = STAGE_NAMES) -> None:
        super().__init__()
        for name in out_features:
            if name not in STAGE_NAMES:
                raise ValueError(f"unknown backbone output {name!r}; expected some of {STAGE_NAMES}")
        self.out_features = tuple(out_features)
        c = config.stem_channels
        self.conv1 = nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        shapes = []
        stride = 4
        for i, (blocks, width) in enumerate(zip(config.stage_blocks, config.stage_widths)):
            out = width * config.expansion
            dil = config.dilation if _DILATED[i] else 1
            layers = []
            for j in range(blocks):
                layers.append(
                    Bottleneck(
                        c if j == 0 else out,
                        width,
                        out,
                        stride=_STAGE_STRIDES[i] if j == 0 else 1,
                        dilation=dil,
                        projection=j == 0,  # bottleneck B in stages 5/6, shape change in 2-4
                        stride_in=config.stride_in,
                    )
                )
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            stride *= _STAGE_STRIDES[i]
            shapes.append(ShapeSpec(STAGE_NAMES[i], out, stride))
            c = out
        self._shapes = {s.name: s for s in shapes}
        self.out_channels = c
        self._last = max(STAGE_NAMES.index(n) for n in self.out_features)

    def stages(self) -> list[nn.Sequential]:
        """``[layer1, ..., layer5]`` (stages 2..6)."""
        return [getattr(self, f"layer{i + 1}") for i in range(5)]

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Name -> :class:`ShapeSpec` of every returned stage, in stage order."""
        return {n: self._shapes[n] for n in self.out_features}

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.forward_stem(x)
        outs: dict[str, torch.Tensor] = {}
        for i, stage in enumerate(self.stages()[: self._last + 1]):
            x = stage(x)
            if STAGE_NAMES[i] in self.out_features:
                outs[STAGE_NAMES[i]] = x
        return outs
