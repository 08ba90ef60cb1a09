"""DetNet-FPN: a feature pyramid over backbone stages 2-6 (P2 ... P6).

As in the paper (section 3.2), stages 4, 5 and 6 all have stride 16, so the top-down path
between them is a plain addition; only the steps from stride 16 to 8 and from 8 to 4 upsample
(nearest, x2). Each level: ``lateral`` 1x1 conv, top-down sum, ``output`` 3x3 conv.
The pyramid is built from the backbone's :class:`ShapeSpec` declaration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ShapeSpec


class DetNetFPN(nn.Module):
    """``forward({"c2": ..., "c6": ...}) -> {"p2": ..., "p6": ...}`` (only the requested levels).

    Args:
        input_shapes: backbone outputs, name -> ShapeSpec, in ascending stage order
            (``cK`` feeds ``pK``).
        channels: channels of every pyramid level.
        out_features: pyramid levels to return; levels below the lowest requested one are not
            built at all (their lateral and output convs would be dead weight).
    """

    def __init__(self, input_shapes: dict[str, ShapeSpec], channels: int, out_features: tuple[str, ...]) -> None:
        super().__init__()
        lowest = min(int(n[1:]) for n in out_features)
        self.in_features = tuple(n for n in input_shapes if int(n[1:]) >= lowest)
        missing = [f"c{n[1:]}" for n in out_features if f"c{n[1:]}" not in input_shapes]
        if missing:
            raise ValueError(f"FPN levels {out_features} need backbone outputs {missing}")
        self.out_features = tuple(out_features)
        self.lateral = nn.ModuleDict()
        self.output = nn.ModuleDict()
        self._shapes: dict[str, ShapeSpec] = {}
        for name in self.in_features:
            spec = input_shapes[name]
            p = "p" + name[1:]
            self.lateral[p] = nn.Conv2d(spec.channels, channels, 1)
            self.output[p] = nn.Conv2d(channels, channels, 3, padding=1)
            self._shapes[p] = ShapeSpec(p, channels, spec.stride)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {n: self._shapes[n] for n in self.out_features}

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outs: dict[str, torch.Tensor] = {}
        top: torch.Tensor | None = None
        top_stride = 0
        for name in reversed(self.in_features):
            p = "p" + name[1:]
            lat = self.lateral[p](feats[name])
            stride = self._shapes[p].stride
            if top is not None:
                if top_stride != stride:  # static: strides are config, not tensor values
                    top = F.interpolate(top, scale_factor=float(top_stride // stride), mode="nearest")
                lat = lat + top
            top, top_stride = lat, stride
            if p in self.out_features:
                outs[p] = self.output[p](lat)
        return {n: outs[n] for n in self.out_features}
