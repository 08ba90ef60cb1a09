"""COCO accuracy of any backend (pycocotools): :func:`~.coco_eval.evaluate` (with its
:class:`~.coco_eval.EvalOptions`).
"""

from .coco_eval import EvalOptions, EvalResult, evaluate

__all__ = ["EvalOptions", "EvalResult", "evaluate"]
