"""DetNet backbone: declared outputs, real outputs, stage-5/6 dilation and stride placement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detnet_trt.models import DetNet59Config, DetNetBackbone, DetNetTinyConfig

EXPECTED = {
    "detnet59": {"c2": (256, 4), "c3": (512, 8), "c4": (1024, 16), "c5": (1024, 16), "c6": (1024, 16)},
    "detnet_tiny": {"c2": (32, 4), "c3": (64, 8), "c4": (128, 16), "c5": (128, 16), "c6": (128, 16)},
}
CONFIGS = {"detnet59": DetNet59Config, "detnet_tiny": DetNetTinyConfig}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_declared_and_real_outputs(name: str) -> None:
    bb = DetNetBackbone(CONFIGS[name]()).eval()
    shapes = bb.output_shape()
    assert list(shapes) == ["c2", "c3", "c4", "c5", "c6"]
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == EXPECTED[name]
    with torch.no_grad():
        outs = bb(torch.zeros(1, 3, 64, 96))
    for k, s in shapes.items():
        assert outs[k].shape == (1, s.channels, 64 // s.stride, 96 // s.stride), k


def test_detnet59_stage_layout() -> None:
    bb = DetNetBackbone(DetNet59Config())
    assert [len(s) for s in bb.stages()] == [3, 4, 6, 3, 3]
    assert [s[0].conv2.out_channels for s in bb.stages()] == [64, 128, 256, 256, 256]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_stage5_and_6_are_dilated_stride1(name: str) -> None:
    bb = DetNetBackbone(CONFIGS[name]())
    for stage in (bb.layer4, bb.layer5):
        for j, block in enumerate(stage):
            convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
            for conv in convs:
                assert conv.stride == (1, 1)
                if conv.kernel_size == (3, 3):
                    assert conv.dilation == (2, 2) and conv.padding == (2, 2)
                else:
                    assert conv.kernel_size == (1, 1) and conv.dilation == (1, 1)
            # bottleneck B (projection shortcut) first, then bottleneck A (identity)
            assert (block.shortcut is not None) == (j == 0)
            assert sum(c.kernel_size == (3, 3) for c in convs) == 1


@pytest.mark.parametrize("stride_in, conv_with_stride", [("3x3", "conv2"), ("1x1", "conv1")])
def test_stride_placement(stride_in: str, conv_with_stride: str) -> None:
    bb = DetNetBackbone(DetNet59Config(stride_in=stride_in))
    for stage in (bb.layer2, bb.layer3):
        first = stage[0]
        for conv in ("conv1", "conv2", "conv3"):
            expected = (2, 2) if conv == conv_with_stride else (1, 1)
            assert getattr(first, conv).stride == expected
        assert first.shortcut[0].stride == (2, 2)
        assert all(c.stride == (1, 1) for b in stage[1:] for c in b.modules() if isinstance(c, nn.Conv2d))
    for stage in (bb.layer1, bb.layer4, bb.layer5):
        assert all(c.stride == (1, 1) for c in stage.modules() if isinstance(c, nn.Conv2d))


def test_out_features_subset() -> None:
    bb = DetNetBackbone(DetNetTinyConfig(), out_features=("c3", "c6"))
    assert list(bb.output_shape()) == ["c3", "c6"]
    assert set(bb(torch.zeros(1, 3, 32, 32))) == {"c3", "c6"}
    with pytest.raises(ValueError, match="c7"):
        DetNetBackbone(DetNetTinyConfig(), out_features=("c7",))
