"""COCO bbox accuracy of any model through the deployment pre- and post-processing.

:func:`evaluate` runs a checkpoint, ONNX file, Q/DQ ONNX or TensorRT engine (or an already built
:class:`~detnet_trt.runtime.backends.base.Backend`) on a COCO-format dataset through
:class:`~detnet_trt.runtime.detector.Detector` (letterbox -> infer -> class-aware NMS, boxes mapped back
to the original image), with a low score threshold as COCO evaluation requires
(:meth:`~detnet_trt.core.config.PostprocessConfig.for_eval`), writes the COCO results JSON if asked
(:class:`EvalOptions`), and computes the 12 standard COCO bbox metrics and per-class AP with
pycocotools.

All metrics are on the **0-100 scale** (pycocotools' fractions x 100); ``-1`` means "undefined"
(no ground truth in that area range / class), as in pycocotools. The model's classes are mapped
to the dataset's categories **by name**, so non-contiguous ids (COCO's 1..90 with gaps) and a
different category order are handled; a model whose class names differ from the dataset's is an
error, not a silent mis-mapping.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import PostprocessConfig
from ..core.errors import IncompatibleError, InputError
from ..core.fileio import atomic_write_text, check_writable
from ..core.images import SkippedImages
from ..core.limits import BATCH, COUNT, check_ranges
from ..data.coco import CocoDataset
from ..runtime.backends.base import Backend
from ..runtime.postprocess import Detections

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_METRIC_LABELS = (
    "AP @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AP @[IoU=0.50      | area=all | maxDets=100]",
    "AP @[IoU=0.75      | area=all | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AP @[IoU=0.50:0.95 | area=large | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=1]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=10]",
    "AR @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "AR @[IoU=0.50:0.95 | area=large | maxDets=100]",
)


@dataclass
class EvalResult:
    """``metrics``: the 12 COCO bbox metrics (0-100, -1 = undefined); ``per_class``: class name ->
    ``{"AP", "AP50", "num_gt"}`` (0-100, -1 when the class has no ground truth)."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    num_images: int = 0
    num_detections: int = 0
    seconds: float = 0.0
    results_json: Path | None = None
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why) of the unreadable images

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics_scale": "0-100 (-1 = undefined)",
            "metrics": self.metrics,
            "per_class": self.per_class,
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "seconds": round(self.seconds, 3),
            "results_json": str(self.results_json) if self.results_json else None,
            "model": self.model,
            "dataset": self.dataset,
            "settings": self.settings,
            "skipped": [{"image": p, "error": why} for p, why in self.skipped],
        }

    def table(self, per_class: bool = False) -> str:
        """pycocotools' 12-line summary (0-100), plus a per-class AP table when asked."""
        lines = [f" {label:<52} = {self.metrics[k]:6.2f}   ({k})" for k, label in zip(METRIC_KEYS, _METRIC_LABELS)]
        if per_class and self.per_class:
            width = max(8, *(len(n) for n in self.per_class))
            lines += ["", f" {'class':<{width}}  {'AP':>6}  {'AP50':>6}  {'#gt':>6}"]
            for name, d in self.per_class.items():
                lines.append(f" {name:<{width}}  {d['AP']:6.2f}  {d['AP50']:6.2f}  {int(d['num_gt']):>6}")
        return "\n".join(lines)


# --- metric computation (pycocotools) -------------------------------------------------------------
def _coco_gt(gt: CocoDataset | dict[str, Any] | str | os.PathLike[str]) -> Any:
    from pycocotools.coco import COCO

    if isinstance(gt, CocoDataset):
        data = gt.raw
    elif isinstance(gt, dict):
        data = gt
    else:
        data = json.loads(Path(gt).read_text(encoding="utf-8"))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _coco_dt(coco_gt: Any, results: list[dict[str, Any]]) -> Any:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco_gt.loadRes(results)
        empty = COCO()  # loadRes() cannot take an empty list
        gt = coco_gt.dataset
        empty.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
        empty.createIndex()
        return empty


def coco_bbox_metrics(
    gt: CocoDataset | dict[str, Any] | str | os.PathLike[str],
    results: list[dict[str, Any]],
    image_ids: Iterable[int] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The 12 COCO bbox metrics and per-class AP of ``results`` (COCO results-JSON records:
    ``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``) against ground truth ``gt``.

    Only ``image_ids`` are evaluated when given (default: every image of ``gt``). Returns
    ``(metrics, per_class)`` on the 0-100 scale, -1 where undefined.
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = _coco_gt(gt)
    coco_dt = _coco_dt(coco_gt, results)
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    if image_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics = {k: _pct(v) for k, v in zip(METRIC_KEYS, ev.stats)}
    precision = ev.eval["precision"]  # T x R x K x A x M; area "all" = 0, maxDets 100 = -1
    per_class: dict[str, dict[str, float]] = {}
    cats = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    img_set = set(ev.params.imgIds)
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(catIds=[cat_id]))
        num_gt = sum(1 for a in anns if not a.get("iscrowd", 0) and a["image_id"] in img_set)
        per_class[str(cats[cat_id])] = {
            "AP": _pct(float(np.mean(p[p > -1]))) if (p > -1).any() else -1.0,
            "AP50": _pct(float(np.mean(p50[p50 > -1]))) if (p50 > -1).any() else -1.0,
            "num_gt": float(num_gt),
        }
    return metrics, per_class


def _pct(v: float) -> float:
    v = float(v)
    if math.isnan(v) or v < 0:
        return -1.0
    return round(100.0 * v, 4)


# --- model classes <-> dataset categories -----------------------------------------------------
def class_to_category_ids(model_classes: Sequence[str], dataset: CocoDataset) -> np.ndarray:
    """Dataset category id of each model class index, matched by name.

    Raises :class:`IncompatibleError` naming the differences when the sets of names differ.
    """
    by_name = dict(zip(dataset.class_names, dataset.cat_ids))
    model_set, data_set = set(model_classes), set(by_name)
    if model_set != data_set or len(model_classes) != len(model_set):
        only_model = sorted(model_set - data_set)
        only_data = sorted(data_set - model_set)
        detail = []
        if only_model:
            detail.append(f"only in the model: {', '.join(only_model[:8])}")
        if only_data:
            detail.append(f"only in the dataset: {', '.join(only_data[:8])}")
        if len(model_classes) != len(model_set):
            detail.append("the model has duplicate class names")
        raise IncompatibleError(
            f"the model's {len(model_classes)} classes do not match the {len(data_set)} categories of "
            f"{dataset.ann_file} ({'; '.join(detail)})",
            "evaluate on the dataset the model was trained for (classes are matched by name)",
        )
    return np.asarray([by_name[n] for n in model_classes], np.int64)


def detections_to_coco(image_id: int, dets: Detections, cat_ids: np.ndarray) -> list[dict[str, Any]]:
    """One image's detections (frame pixels, model class indices) -> COCO results records."""
    out = []
    for (x1, y1, x2, y2), s, c in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.class_ids.tolist()):
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(cat_ids[int(c)]),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(s), 5),
            }
        )
    return out


# --- running a model ------------------------------------------------------------------------------
@contextlib.contextmanager
def open_model(model: str | os.PathLike[str] | Backend, **backend_kwargs: Any) -> Any:
    """An open backend for a model path (closed afterwards) or a given backend (left as found)."""
    if isinstance(model, Backend):
        was_open = model.is_open
        model.open()
        try:
            yield model
        finally:
            if not was_open:
                model.close()
        return
    from ..runtime.backends import load_backend

    with load_backend(model, **backend_kwargs) as backend:
        yield backend


def iter_batches(
    dataset: CocoDataset, indices: Sequence[int], batch: int, skipped: SkippedImages | None = None
) -> Iterable[tuple[list[int], list[np.ndarray]]]:
    """``(image ids, BGR frames)`` of ``batch`` images at a time; images read one batch ahead. With
    ``skipped``, an unreadable image is recorded there and left out (a batch may come out short,
    or empty); without, it raises :class:`InputError`."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [list(indices[i : i + batch]) for i in range(0, len(indices), batch)]

    def load(chunk: list[int]) -> tuple[list[int], list[np.ndarray]]:
        items = [dataset[i] for i in chunk]
        if skipped is None:
            return [it.image_id for it in items], [it.load() for it in items]
        read = [(it.image_id, skipped.read(it.path)) for it in items]
        return [iid for iid, img in read if img is not None], [img for _, img in read if img is not None]

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            assert pending is not None
            result = pending.result()
            pending = pool.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
            yield result


def _select(dataset: CocoDataset, max_images: int | None) -> list[int]:
    n = len(dataset) if max_images is None else min(len(dataset), max(0, int(max_images)))
    return list(range(n))


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate` runs: ``batch`` images through the backend at a time (``--batch``), the
    first ``max_images`` images only, sorted by id (``--limit``; ``None``: all), the COCO results
    records written to ``results_json`` (``--json``; refused if it exists, unless ``force``),
    a progress bar (off with ``--quiet``)."""

    batch: int = 1
    max_images: int | None = None
    results_json: str | os.PathLike[str] | None = None
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"--batch must be >= 1, got {self.batch}")
        check_ranges(("--batch", BATCH, self.batch), ("--limit", COUNT, self.max_images))


def _detect_all(
    detector: Any, dataset: CocoDataset, indices: Sequence[int], cat_ids: np.ndarray, options: EvalOptions,
    skipped: SkippedImages,
) -> list[dict[str, Any]]:
    """The COCO results records of every selected image."""
    results: list[dict[str, Any]] = []
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), desc="eval", unit="img")
    try:
        for image_ids, frames in iter_batches(dataset, indices, options.batch, skipped):
            for iid, dets in zip(image_ids, detector(frames) if frames else []):
                results.extend(detections_to_coco(iid, dets, cat_ids))
            if bar is not None:
                bar.update(len(frames))
    finally:
        if bar is not None:
            bar.close()
    return results


def evaluate(
    model: str | os.PathLike[str] | Backend,
    ann_file: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    options: EvalOptions = EvalOptions(),
    post: PostprocessConfig = PostprocessConfig.for_eval(),
    *,
    backend_kwargs: dict[str, Any] | None = None,
    skipped: SkippedImages | None = None,
) -> EvalResult:
    """COCO bbox metrics of ``model`` on a dataset (see the module docstring).

    An image that cannot be read is skipped (recorded in ``skipped``, whose ``on_skip`` names it as
    it is met; in ``EvalResult.skipped``) and the metrics are of the images read; none readable is
    an :class:`InputError`.

    ``post`` is the post-processing (default :meth:`PostprocessConfig.for_eval`: the low score
    threshold COCO AP expects); ``options`` the batch, image limit, results JSON and progress bar
    (:class:`EvalOptions`); ``backend_kwargs`` go to :func:`~detnet_trt.load_backend`.
    """
    from ..runtime.detector import Detector

    dataset = CocoDataset(ann_file, image_dir)
    indices = _select(dataset, options.max_images)
    dataset.check_files()
    if options.results_json is not None:
        check_writable(options.results_json, options.force,
                       inputs=(ann_file, None if isinstance(model, Backend) else model))
    t0 = time.perf_counter()
    with open_model(model, **(backend_kwargs or {})) as backend:
        cat_ids = class_to_category_ids(backend.meta.class_names, dataset)
        detector = Detector(backend, post, max_batch=options.batch)
        skipped = skipped if skipped is not None else SkippedImages()
        results = _detect_all(detector, dataset, indices, cat_ids, options, skipped)
        described = backend.describe()
    seconds = time.perf_counter() - t0
    out_path = None
    if options.results_json is not None:
        out_path = atomic_write_text(options.results_json, json.dumps(results), force=options.force)
    unread = {p for p, _ in skipped.items}
    image_ids = [iid for iid in (dataset.image_ids[i] for i in indices) if str(dataset.image_path(iid)) not in unread]
    if indices and not image_ids:
        raise skipped.none_readable(str(dataset.image_dir))
    metrics, per_class = coco_bbox_metrics(dataset, results, image_ids)
    return EvalResult(
        metrics=metrics,
        per_class=per_class,
        num_images=len(image_ids),
        skipped=list(skipped.items),
        num_detections=len(results),
        seconds=seconds,
        results_json=out_path,
        model={"path": str(model) if not isinstance(model, Backend) else None, **described},
        dataset={"ann_file": str(dataset.ann_file), "image_dir": str(dataset.image_dir)},
        settings={"conf": post.conf, "iou": post.iou, "max_det": post.max_det, "batch": options.batch,
                  "max_images": options.max_images},
    )


__all__ = [
    "METRIC_KEYS",
    "EvalOptions",
    "EvalResult",
    "class_to_category_ids",
    "coco_bbox_metrics",
    "detections_to_coco",
    "evaluate",
    "open_model",
]
