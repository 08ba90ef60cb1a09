"""Typed configuration of a DetNet detector: one dataclass, one subclass per registered variant.

A config holds everything needed to rebuild the network (backbone depth and widths, where the
stride sits, FPN width, which pyramid levels feed the head, head depth, loss settings, input size,
top-K). A checkpoint stores ``dataclasses.asdict(config)`` and the variant name, so
``MODELS[name](**config_dict)`` rebuilds the same network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InputError
from ..core.meta import LAYOUTS

STRIDE_PLACEMENTS = ("3x3", "1x1")
HEAD_NORMS = ("bn", "none")
LEVEL_NAMES = ("p2", "p3", "p4", "p5", "p6")


@dataclass
class DetNetConfig:
    """Base config; the defaults are those of DetNet-59 (paper, section 3 and figure 2).

    Backbone (stage 1 is the 7x7 stem + max-pool; stages 2..6 are bottleneck stages):

    - ``stage_blocks``: bottlenecks per stage 2..6 (DetNet-59: 3, 4, 6, 3, 3).
    - ``stage_widths``: bottleneck (3x3 conv) width per stage 2..6; a block outputs
      ``expansion * width`` channels (DetNet-59: 64, 128, 256, 256, 256 -> 256 ... 1024).
    - ``stride_in``: where the stride-2 of the first block of stages 3 and 4 sits: ``"3x3"``
      (the public DetNet_pytorch / torchvision implementation, needed to import its weights) or
      ``"1x1"`` (the original ResNet / Caffe models).
    - ``dilation``: dilation of the 3x3 conv in stages 5 and 6 (spatial size stays at 1/16).
    """

    name: str = "detnet59"
    num_classes: int = 80
    input_size: tuple[int, int] = (512, 512)  # (H, W), multiples of 16
    layout: str = "nchw"
    topk: int = 1000
    # backbone
    stem_channels: int = 64
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3, 3)
    stage_widths: tuple[int, ...] = (64, 128, 256, 256, 256)
    expansion: int = 4
    dilation: int = 2
    stride_in: str = "3x3"
    # neck
    fpn_channels: int = 256
    head_levels: tuple[str, ...] = ("p3", "p4", "p5", "p6")
    # head
    head_convs: int = 4
    head_norm: str = "bn"
    level_sizes: dict[str, float] = field(
        default_factory=lambda: {"p2": 32.0, "p3": 64.0, "p4": 128.0, "p5": 256.0, "p6": 512.0}
    )
    prior_prob: float = 0.01
    center_radius: float = 1.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss_weight: float = 1.0
    ctr_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.stage_blocks = tuple(int(b) for b in self.stage_blocks)
        self.stage_widths = tuple(int(w) for w in self.stage_widths)
        self.head_levels = tuple(str(x) for x in self.head_levels)
        self.level_sizes = {str(k): float(v) for k, v in self.level_sizes.items()}
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` for a config that cannot build a working model."""

        def bad(what: str, got: Any, expected: str) -> InputError:
            return InputError(f"model config {self.name!r}: {what} is {got!r}, expected {expected}")

        if self.num_classes < 1:
            raise bad("num_classes", self.num_classes, "at least 1")
        if len(self.stage_blocks) != 5 or min(self.stage_blocks) < 1:
            raise bad("stage_blocks", self.stage_blocks, "5 positive block counts (stages 2..6)")
        if len(self.stage_widths) != 5 or min(self.stage_widths) < 1:
            raise bad("stage_widths", self.stage_widths, "5 positive widths (stages 2..6)")
        if self.stride_in not in STRIDE_PLACEMENTS:
            raise bad("stride_in", self.stride_in, f"one of {STRIDE_PLACEMENTS}")
        if self.layout not in LAYOUTS:
            raise bad("layout", self.layout, f"one of {LAYOUTS}")
        if self.head_norm not in HEAD_NORMS:
            raise bad("head_norm", self.head_norm, f"one of {HEAD_NORMS}")
        h, w = self.input_size
        if h < 16 or w < 16 or h % 16 or w % 16:
            raise bad("input_size", self.input_size, "(H, W) with H and W positive multiples of 16")
        if not self.head_levels or any(lv not in LEVEL_NAMES for lv in self.head_levels):
            raise bad("head_levels", self.head_levels, f"a non-empty subset of {LEVEL_NAMES}")
        if list(self.head_levels) != sorted(set(self.head_levels), key=LEVEL_NAMES.index):
            raise bad("head_levels", self.head_levels, "distinct levels in ascending order")
        missing = [lv for lv in self.head_levels if lv not in self.level_sizes]
        if missing:
            raise bad("level_sizes", self.level_sizes, f"a size for each head level (missing {missing})")
        if self.topk < 1:
            raise bad("topk", self.topk, "at least 1")
        if self.head_convs < 0:
            raise bad("head_convs", self.head_convs, "0 or more")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (lists for tuples) that ``torch.load(weights_only=True)`` reads back."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"model config has unknown fields {unknown}", f"known fields: {sorted(names)}")
        return cls(**d)


@dataclass
class DetNet59Config(DetNetConfig):
    """DetNet-59 as in the paper: ResNet-50 stages 1-4 + two dilated stages of 3 blocks."""

    name: str = "detnet59"


@dataclass
class DetNetTinyConfig(DetNetConfig):
    """Narrow, shallow member of the family (same stage layout incl. dilated stride-16 stages 5/6)
    for tests and the CPU demo: trains on 2 CPU cores in minutes at 320x320."""

    name: str = "detnet_tiny"
    input_size: tuple[int, int] = (320, 320)
    topk: int = 300
    stem_channels: int = 16
    stage_blocks: tuple[int, ...] = (1, 1, 2, 1, 1)
    stage_widths: tuple[int, ...] = (8, 16, 32, 32, 32)
    fpn_channels: int = 48
    head_convs: int = 2
