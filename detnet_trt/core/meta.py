"""The model metadata contract shared by every artifact.

An exported ONNX file carries a :class:`ModelMeta` in its ``metadata_props`` (keys prefixed with
``detnet_trt.``, values JSON), a TensorRT engine carries it in its sidecar JSON, and a checkpoint
carries the fields it knows. Every later step reads input size, layout, class names and
normalisation from here, so a user never passes them twice.

Tensor names of the exported graph (fixed, every backend uses them):

- input ``images``: uint8, ``N x 3 x H x W`` (layout ``nchw``) or ``N x H x W x 3`` (``nhwc``),
  channels in ``channel_order`` (BGR, as OpenCV delivers frames), N dynamic, H x W fixed.
- host-NMS outputs (``nms == "host"``): ``boxes`` float32 ``N x K x 4`` (xyxy, input pixels),
  ``scores`` float32 ``N x K``, ``class_ids`` int32 ``N x K``; K = ``topk``, sorted by score.
- in-graph NMS outputs (``nms in ("onnx", "efficient")``): ``det_boxes`` ``N x D x 4``,
  ``det_scores`` ``N x D``, ``det_class_ids`` ``N x D`` int32 (padded to D = ``max_det``), and
  ``num_dets`` int32 ``N`` (valid rows per image).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

INPUT_NAME = "images"
HOST_NMS_OUTPUTS = ("boxes", "scores", "class_ids")
GRAPH_NMS_OUTPUTS = ("det_boxes", "det_scores", "det_class_ids", "num_dets")
META_PREFIX = "detnet_trt."
LAYOUTS = ("nchw", "nhwc")
NMS_MODES = ("host", "onnx", "efficient")
PRECISIONS = ("fp32", "fp16", "int8")

# ImageNet statistics in 0-255 pixel units, RGB order (what the DetNet-59 ImageNet weights expect).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class ModelMeta:
    """What every backend, pre- and post-processing step needs to know about a model."""

    model: str
    class_names: list[str]
    input_size: tuple[int, int]  # (H, W)
    layout: str = "nchw"
    channel_order: str = "bgr"  # channel order of the uint8 input; the graph converts to RGB
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, 0-255 units
    std: tuple[float, float, float] = IMAGENET_STD
    topk: int = 1000
    nms: str = "host"
    max_det: int = 100  # padded detection count for in-graph NMS
    precision: str = "fp32"
    checkpoint_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: quantization, build, ...

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.class_names = list(self.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_names(self) -> tuple[str, ...]:
        return HOST_NMS_OUTPUTS if self.nms == "host" else GRAPH_NMS_OUTPUTS

    def input_shape(self, batch: int | str = "N") -> tuple[Any, ...]:
        h, w = self.input_size
        return (batch, 3, h, w) if self.layout == "nchw" else (batch, h, w, 3)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_props(self) -> dict[str, str]:
        """ONNX ``metadata_props`` entries: ``detnet_trt.<field>`` -> JSON value."""
        return {META_PREFIX + k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMeta | None:
        """Inverse of :meth:`to_props`; ``None`` when the props carry no detnet_trt metadata."""
        d = {k[len(META_PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}
        if "model" not in d or "class_names" not in d or "input_size" not in d:
            return None
        return cls.from_dict(d)

    def with_updates(self, **changes: Any) -> ModelMeta:
        return dataclasses.replace(self, **changes)
