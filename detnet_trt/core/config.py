"""Post-processing options: score threshold, NMS IoU and detections per image, as one typed object.

Every path that returns detections (infer, camera, serve, the Triton post-processing, bench,
compare, the in-graph NMS of ``export``/``build``) takes a :class:`PostprocessConfig`; the defaults
live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

#: Score threshold of the paths that return detections to a user (infer, camera, serve,
#: the Triton post-processing, bench's end-to-end figure, compare's matching); evaluation uses
#: 0.001, as COCO AP expects. The head's score is sqrt(sigmoid(cls) * sigmoid(ctr))
#: (:mod:`detnet_trt.models.head`), a geometric mean that lifts low values (class probability
#: 0.1 at centerness 0.9 scores 0.3), so the threshold sits higher than for a plain class
#: probability. Measured on the shipped demo model (40 unseen demo scenes, IoU 0.5, same class):
#: precision / recall 0.15 / 0.95 at 0.25, 0.53 / 0.86 at 0.4, 0.86 / 0.78 at 0.5 (best F1),
#: 0.95 / 0.65 at 0.6 (``benchmarks/conf_threshold.py``).
DEFAULT_CONF = 0.5
#: NMS IoU threshold of the user-facing paths (and of the in-graph NMS baked by export / build).
DEFAULT_IOU = 0.5
#: Detections kept per image (COCO scoring keeps at most 100).
DEFAULT_MAX_DET = 100
#: The most ``max_det`` may be (the range of ``--max-det``: ``core.limits.MAX_DET``). No import of
#: ``core.limits`` here: this module is vendored, alone, into the Triton post-processing model.
MAX_DETECTIONS = 10_000
#: Evaluation thresholds: COCO AP wants nearly every candidate (score 0.001) and a looser NMS.
EVAL_CONF = 0.001
EVAL_IOU = 0.6


@dataclass(frozen=True)
class PostprocessConfig:
    """Score threshold, class-aware NMS IoU threshold and detections per image."""

    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    max_det: int = DEFAULT_MAX_DET

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf <= 1.0:
            raise InputError(f"score threshold {self.conf} is outside 0..1", "pass --conf between 0 and 1")
        if not 0.0 < self.iou <= 1.0:
            raise InputError(f"NMS IoU threshold {self.iou} is outside (0, 1]", "pass --iou in (0, 1]")
        if self.max_det < 1:
            raise InputError(f"max detections {self.max_det} must be at least 1", "pass --max-det >= 1")
        if self.max_det > MAX_DETECTIONS:
            raise InputError(f"max detections {self.max_det} is more than {MAX_DETECTIONS}",
                             f"pass --max-det up to {MAX_DETECTIONS} (COCO scoring keeps 100)")

    @classmethod
    def for_eval(cls, max_det: int = DEFAULT_MAX_DET) -> PostprocessConfig:
        """The thresholds COCO evaluation uses (score 0.001, IoU 0.6)."""
        return cls(conf=EVAL_CONF, iou=EVAL_IOU, max_det=max_det)


#: The NMS baked into a graph (``export --nms onnx``): a low score threshold so that the host's
#: threshold (:data:`DEFAULT_CONF`) still decides what a user sees.
GRAPH_NMS = PostprocessConfig(conf=EVAL_CONF, iou=DEFAULT_IOU, max_det=DEFAULT_MAX_DET)

#: ``build --nms efficient`` (EfficientNMS_TRT): score 0.01, the lowest that keeps the plugin on its
#: fast path with a margin (``detnet_trt.export.efficient_nms``); IoU and detections as above.
EFFICIENT_NMS = PostprocessConfig(conf=0.01, iou=DEFAULT_IOU, max_det=DEFAULT_MAX_DET)
