"""Registry and configs: variants, overrides, validation."""

from __future__ import annotations

import pytest

from detnet_trt.core.errors import InputError
from detnet_trt.models import MODELS, DetNet59Config, DetNetFPNConfig, DetNetTinyConfig, build_model, model_config


def test_variants() -> None:
    assert {"detnet59": DetNet59Config, "detnet_tiny": DetNetTinyConfig, "detnet59_fpn": DetNetFPNConfig} == MODELS
    cfg = model_config("detnet59")
    assert cfg.stage_blocks == (3, 4, 6, 3, 3) and cfg.stride_in == "3x3" and cfg.dilation == 2
    tiny = model_config("detnet_tiny")
    assert tiny.input_size == (320, 320) and len(tiny.stage_blocks) == 5


def test_overrides_and_round_trip() -> None:
    m = build_model("detnet_tiny", 4, input_size=(96, 128), topk=77, head_levels=("p2", "p3", "p4", "p5", "p6"))
    assert m.input_size == (96, 128) and m.topk == 77 and m.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert list(m.fpn.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    again = DetNetTinyConfig.from_dict(m.config.to_dict())
    assert again == m.config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_size": (100, 96)}, "multiples of 16"),
        ({"stride_in": "2x2"}, "stride_in"),
        ({"head_levels": ("p4", "p3")}, "ascending"),
        ({"head_levels": ("p7",)}, "head_levels"),
        ({"layout": "chw"}, "layout"),
        ({"no_such_option": 1}, "unknown option"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        build_model("detnet_tiny", 2, **kwargs)


def test_unknown_model_and_names() -> None:
    with pytest.raises(InputError, match="unknown model 'resnet'"):
        build_model("resnet", 2)
    with pytest.raises(InputError, match="class names"):
        build_model("detnet_tiny", 2, class_names=["a"])


def test_detnet_tiny_size() -> None:
    """Pinned cost of the CPU variant (3 classes, 320x320): 0.44 GMACs, 313,852 parameters."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    m = build_model("detnet_tiny", 3).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.zeros(1, 3, 320, 320, dtype=torch.uint8))
    assert counter.get_total_flops() / 2 / 1e9 == pytest.approx(0.440, abs=0.001)
    assert sum(p.numel() for p in m.parameters()) == 313_852
    assert sum(p.numel() for p in m.backbone.parameters()) == 121_072
