"""COCO accuracy of any backend (pycocotools): :func:`~.coco_eval.evaluate`.
"""

from .coco_eval import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
