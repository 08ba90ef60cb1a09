"""Counted FLOPs and parameters of classification DetNet-59 at 224x224 vs the paper (4.8 GFLOPs).

``torch.utils.flop_counter`` counts 2 FLOPs per multiply-add; the paper (like the ResNet paper)
counts one multiply-add as one FLOP, so the counted total is halved before comparing.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from detnet_trt.models import DetNet59Config, DetNetClassifier, DetNetTinyConfig

PAPER_GMACS = 4.8
DETNET59_PARAMS = 18_372_648  # conv + BN affine + fc(1024 -> 1000); same for both stride placements


def _gmacs(model: torch.nn.Module) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return counter.get_total_flops() / 2 / 1e9


@pytest.fixture(scope="module")
def counts() -> dict[str, tuple[float, int]]:
    out = {}
    for placement in ("1x1", "3x3"):
        m = DetNetClassifier(DetNet59Config(stride_in=placement)).eval()
        out[placement] = (_gmacs(m), sum(p.numel() for p in m.parameters()))
    return out


def test_flops_stride_in_1x1_matches_paper(counts: dict[str, tuple[float, int]]) -> None:
    gmacs, params = counts["1x1"]
    assert gmacs == pytest.approx(4.846, abs=0.001)
    assert abs(gmacs - PAPER_GMACS) / PAPER_GMACS < 0.02  # the paper rounds to 4.8
    assert params == DETNET59_PARAMS


def test_flops_stride_in_3x3(counts: dict[str, tuple[float, int]]) -> None:
    gmacs, params = counts["3x3"]
    assert gmacs == pytest.approx(5.000, abs=0.001)
    assert params == DETNET59_PARAMS
    # the stride in the 3x3 conv costs more: the 1x1 reduce of stages 3 and 4 runs at full size
    assert gmacs > counts["1x1"][0]


def test_logits_shape() -> None:
    m = DetNetClassifier(DetNetTinyConfig(), num_classes=7).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
