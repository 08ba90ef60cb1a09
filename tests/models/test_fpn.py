"""DetNet-FPN: levels, channels, strides; no upsampling among the stride-16 levels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detnet_trt.models import DetNetBackbone, DetNetFPN, DetNetTinyConfig
from detnet_trt.models import fpn as fpn_module


def _fpn(levels: tuple[str, ...]) -> tuple[DetNetBackbone, DetNetFPN]:
    bb = DetNetBackbone(DetNetTinyConfig())
    return bb, DetNetFPN(bb.output_shape(), 24, levels)


def test_all_levels_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    bb, fpn = _fpn(("p2", "p3", "p4", "p5", "p6"))
    assert {k: (s.channels, s.stride) for k, s in fpn.output_shape().items()} == {
        "p2": (24, 4), "p3": (24, 8), "p4": (24, 16), "p5": (24, 16), "p6": (24, 16)
    }
    calls = []
    real = F.interpolate

    def spy(x: torch.Tensor, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(tuple(x.shape[-2:]))
        return real(x, *a, **kw)

    monkeypatch.setattr(fpn_module.F, "interpolate", spy)
    with torch.no_grad():
        out = fpn(bb(torch.zeros(1, 3, 64, 64)))
    assert [tuple(v.shape) for v in out.values()] == [(1, 24, 16, 16), (1, 24, 8, 8), (1, 24, 4, 4), (1, 24, 4, 4), (1, 24, 4, 4)]
    # only 16 -> 8 and 8 -> 4 upsample; P6 -> P5 -> P4 are plain sums at stride 16
    assert calls == [(4, 4), (8, 8)]


def test_top_down_sum_at_stride16() -> None:
    bb, fpn = _fpn(("p4", "p5", "p6"))
    feats = bb(torch.randn(1, 3, 32, 32))
    with torch.no_grad():
        out = fpn(feats)
        lat6 = fpn.lateral["p6"](feats["c6"])
        lat5 = fpn.lateral["p5"](feats["c5"]) + lat6
        assert torch.allclose(out["p6"], fpn.output["p6"](lat6))
        assert torch.allclose(out["p5"], fpn.output["p5"](lat5), atol=1e-6)


def test_unused_low_levels_not_built() -> None:
    _, fpn = _fpn(("p4", "p5", "p6"))
    assert set(fpn.lateral) == {"p4", "p5", "p6"} and fpn.in_features == ("c4", "c5", "c6")
