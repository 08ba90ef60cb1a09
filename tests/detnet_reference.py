"""A plain DetNet-59 backbone over a state dict (``F.conv2d`` / ``F.batch_norm`` only): the reference
that tests/models compares the package's modules with, for the key names of either public layout
(the ImageNet classifier's, the two-stage FPN detector's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLOCKS = (3, 4, 6, 3, 3)  # bottlenecks per stage, C2 ... C6


def bn(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    """Inference batch norm with the ``p.*`` statistics and affine of ``sd``."""
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)


def reference_stages(sd: dict[str, torch.Tensor], x: torch.Tensor, stem_conv: str, stem_bn: str,
                     block: str) -> list[torch.Tensor]:
    """C2 ... C6: the stem (``stem_conv`` weight, ``stem_bn``), max pool, then the bottlenecks named
    ``block.format(layer=1..5, j=index)`` (stride 2 at the first block of stages 2 and 3, dilation 2
    from stage 4 on; the first block's shortcut ``downsample``, or ``extra_conv`` from stage 4 on)."""
    x = F.relu(bn(F.conv2d(x, sd[stem_conv], stride=2, padding=3), sd, stem_bn))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for layer, n in enumerate(BLOCKS, start=1):
        for j in range(n):
            p = block.format(layer=layer, j=j)
            stride = 2 if layer in (2, 3) and j == 0 else 1
            dil = 2 if layer >= 4 else 1
            out = F.relu(bn(F.conv2d(x, sd[p + ".conv1.weight"]), sd, p + ".bn1"))
            out = F.relu(bn(F.conv2d(out, sd[p + ".conv2.weight"], stride=stride, padding=dil, dilation=dil), sd, p + ".bn2"))
            out = bn(F.conv2d(out, sd[p + ".conv3.weight"]), sd, p + ".bn3")
            short = "downsample" if layer <= 3 else "extra_conv"
            res = bn(F.conv2d(x, sd[f"{p}.{short}.0.weight"], stride=stride), sd, f"{p}.{short}.1") if j == 0 else x
            x = F.relu(out + res)
        outs.append(x)
    return outs
