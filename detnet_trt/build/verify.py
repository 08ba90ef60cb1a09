"""``detnet-trt build --verify IMAGES``: does the new engine detect what its ONNX file detects?

After the build, the images go through the engine and through the ONNX file it was built from
(ONNX Runtime, CPU), each through the same letterbox and host post-processing
(:class:`~detnet_trt.runtime.detector.Detector`); the final detections of each image are matched
one to one (same class, IoU >= 0.5, in score order: the rule of ``detnet-trt compare``). With
COCO annotations for the images, both are scored (COCO AP) and the engine's AP drop is compared
with the budget (``--max-ap-drop``, else the quantization gate's 0.3 AP). The record goes into the
engine's sidecar (``build.verify``). The reference for an ``--nms efficient`` engine is the ONNX
before the plugin was appended (ONNX Runtime cannot run ``EfficientNMS_TRT``), with the same
NMS settings applied on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import PostprocessConfig
from ..core.errors import DetnetError, InputError
from ..core.images import is_image_file, list_images, read_image
from ..runtime.backends.base import Backend
from ..runtime.matching import MATCH_IOU, match_detections
from .options import VerifyOptions


class EngineAccuracyError(DetnetError):
    """The engine lost more AP against its ONNX file than ``--max-ap-drop`` allows."""

    exit_code = 3


def image_files(opts: VerifyOptions) -> list[Path]:
    """The images to run: the folder's (sorted), or the one file; at most ``max_images``."""
    files = [opts.images] if opts.images.is_file() else list_images(opts.images)
    files = [f for f in files if is_image_file(f)][: opts.max_images]
    if not files:
        raise InputError(f"--verify {opts.images}: no image files there", "pass a folder of .jpg / .png images")
    return files


def agreement(engine: Backend, reference: Backend, frames: Sequence[np.ndarray], post: PostprocessConfig) -> dict[str, Any]:
    """Final detections of ``engine`` and ``reference`` on ``frames`` (one image per call), matched:
    counts, the share matched (of the larger count), the matched pairs' mean IoU and largest score
    difference."""
    from ..runtime.detector import Detector

    det_e, det_r = Detector(engine, post), Detector(reference, post)
    n_e = n_r = 0
    ious: list[float] = []
    score_diffs: list[float] = []
    for frame in frames:
        (a,), (b,) = det_e([frame]), det_r([frame])
        n_e, n_r = n_e + len(a), n_r + len(b)
        for i, j, iou in match_detections(a, b):
            ious.append(iou)
            score_diffs.append(abs(float(a.scores[i]) - float(b.scores[j])))
    larger = max(n_e, n_r)
    return {
        "images": len(frames),
        "engine_detections": n_e,
        "reference_detections": n_r,
        "matched": len(ious),
        "match_rate": round(len(ious) / larger, 4) if larger else 1.0,
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
        "max_score_diff": round(float(np.max(score_diffs)), 4) if score_diffs else None,
        "conf": post.conf,
        "iou_match": MATCH_IOU,
    }


def accuracy(engine: Backend, reference: Backend, opts: VerifyOptions) -> dict[str, Any]:
    """COCO AP of both on the annotated images, the drop and whether it is over the budget."""
    from ..evaluation.coco_eval import EvalOptions, evaluate

    if opts.annotations is None:
        raise ValueError("accuracy() needs annotations")
    images = opts.images if opts.images.is_dir() else opts.images.parent
    options = EvalOptions(progress=False, max_images=opts.max_images)
    ap_e = float(evaluate(engine, opts.annotations, images, options).metrics["AP"])
    ap_r = float(evaluate(reference, opts.annotations, images, options).metrics["AP"])
    drop = ap_r - ap_e
    return {"engine_ap": round(ap_e, 2), "reference_ap": round(ap_r, 2), "ap_drop": round(drop, 2),
            "budget": opts.budget, "over_budget": drop > opts.budget}


def compare_backends(engine: Backend, reference: Backend, opts: VerifyOptions, post: PostprocessConfig) -> dict[str, Any]:
    """The ``build.verify`` record: agreement on the images, and AP when annotated."""
    frames = [read_image(f) for f in image_files(opts)]
    record: dict[str, Any] = {"images_path": str(opts.images), **agreement(engine, reference, frames, post)}
    if opts.annotations is not None:
        record["annotations"] = str(opts.annotations)
        record.update(accuracy(engine, reference, opts))
    return record


def verify_build(engine_path: Path, reference_onnx: Path, opts: VerifyOptions, post: PostprocessConfig) -> dict[str, Any]:
    """:func:`compare_backends` of the engine (TensorRT) and its ONNX file (ONNX Runtime, CPU)."""
    from ..runtime.backends import load_backend

    with load_backend(engine_path) as engine, load_backend(reference_onnx, providers=["CPUExecutionProvider"]) as reference:
        record = compare_backends(engine, reference, opts, post)
    record["reference"] = str(reference_onnx)
    return record


def budget_message(record: dict[str, Any]) -> str | None:
    """The line that says a verified build is over its AP budget (None when it is not, or was not scored)."""
    if not record.get("over_budget"):
        return None
    return (f"the engine's AP is {record['engine_ap']:.2f} against {record['reference_ap']:.2f} for its ONNX file: "
            f"{record['ap_drop']:.2f} AP lost, over the {record['budget']:.2f} AP budget")
