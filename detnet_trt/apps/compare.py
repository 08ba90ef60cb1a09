"""Two models on the same images: how far apart are they? (What a user runs to trust an engine.)

:func:`compare` runs model A (the reference, e.g. the FP32 ONNX) and model B (e.g. the INT8 Q/DQ
ONNX or a TensorRT engine) through the same deployment pre-processing on the same frames and
reports:

- **raw outputs** (when both take the same input size): per output, max / mean absolute error
  and max / mean relative error ``|a - b| / max(|a|, |b|)`` (0 where both are 0; symmetric and
  bounded, so a value near zero cannot dominate the mean), and for integer outputs (class ids)
  the fraction of elements that differ. Outputs are the top-K candidates, sorted by score, so a
  swap of two nearly equal candidates shows as a large error there although nothing changed;
  hence also ``boxes (aligned rows)`` / ``scores (aligned rows)``: the same errors after pairing
  each of A's candidates with B's candidate of the same class and nearest box;
- **detections** after the deployment post-processing (``post``: score threshold, NMS IoU): the
  fraction of A's detections that B reproduces (same class, IoU >= ``match_iou``, greedy by score)
  and vice versa, with the mean IoU and mean score difference of the matched pairs;
- with a COCO-format dataset: the COCO AP of each and the difference (B - A), computed from the
  same inference run with the evaluation thresholds (``eval_post``, default
  :meth:`~detnet_trt.core.config.PostprocessConfig.for_eval`).

Images (:class:`CompareOptions`): the dataset's (``data``), an image folder (``images``), or
deterministic synthetic scenes (:mod:`detnet_trt.data.synth`) when neither is given.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.config import PostprocessConfig
from ..core.errors import IncompatibleError, InputError
from ..core.images import SkippedImages
from ..core.limits import BATCH, COUNT, IOU, SEED, check_ranges
from ..core.meta import HOST_NMS_OUTPUTS
from ..runtime.backends.base import Backend
from ..runtime.matching import match_detections
from ..runtime.postprocess import Detections, postprocess_with

_AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")


@dataclass
class CompareResult:
    """See the module docstring. ``outputs`` is empty when the input sizes differ."""

    a: dict[str, Any]
    b: dict[str, Any]
    num_images: int
    source: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    matching: dict[str, float] = field(default_factory=dict)
    ap: dict[str, dict[str, float]] | None = None
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why) of the unreadable images

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "num_images": self.num_images,
            "source": self.source,
            "outputs": self.outputs,
            "matching": self.matching,
            "ap": self.ap,
            "ap_scale": "0-100 (-1 = undefined)",
            "notes": self.notes,
            "skipped": [{"image": p, "error": why} for p, why in self.skipped],
        }

    def table(self) -> str:
        lines = [
            f"A: {self.a.get('path')} ({self.a.get('backend')}, {self.a.get('precision')})",
            f"B: {self.b.get('path')} ({self.b.get('backend')}, {self.b.get('precision')})",
            f"images: {self.num_images} ({self.source})",
        ]
        if self.outputs:
            lines += [
                "",
                "raw outputs (A is the reference):",
                "| output | shape | max abs | mean abs | max rel | mean rel | differing |",
                "|---|---|---|---|---|---|---|",
            ]
            for name, d in self.outputs.items():
                diff = f"{100 * d['mismatch']:.2f}%" if d.get("mismatch") is not None else "-"
                lines.append(
                    f"| {name} | {'x'.join(map(str, d['shape']))} | {d['max_abs']:.4g} | {d['mean_abs']:.4g} | "
                    f"{d['max_rel']:.4g} | {d['mean_rel']:.4g} | {diff} |"
                )
        m = self.matching
        if m:
            lines += [
                "",
                f"detections (conf {m['conf']}, NMS IoU {m['nms_iou']}): A {int(m['a_dets'])}, B {int(m['b_dets'])}; "
                f"matched (same class, IoU >= {m['match_iou']}): {int(m['matched'])} = "
                f"{100 * m['matched_a']:.1f}% of A's, {100 * m['matched_b']:.1f}% of B's; "
                f"mean IoU {m['mean_iou']:.4f}, mean |score diff| {m['mean_score_diff']:.4f}",
            ]
        if self.ap:
            lines += ["", "| metric | A | B | B - A |", "|---|---|---|---|"]
            for k in _AP_KEYS:
                a, b = self.ap["a"][k], self.ap["b"][k]
                lines.append(f"| {k} | {a:.2f} | {b:.2f} | {self.ap['delta'][k]:+.2f} |")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- pieces ----------------------------------------------------------------------------------------
class _DiffAccumulator:
    """Running per-output error statistics over batches."""

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, Any]] = {}
        self.skipped: set[str] = set()

    def add(self, out_a: dict[str, np.ndarray], out_b: dict[str, np.ndarray]) -> None:
        for name in sorted(set(out_a) | set(out_b)):
            if name not in out_a or name not in out_b or out_a[name].shape != out_b[name].shape:
                self.skipped.add(name)
                continue
            self._accumulate(name, out_a[name], out_b[name])
        if all(k in out_a and k in out_b and out_a[k].shape == out_b[k].shape for k in HOST_NMS_OUTPUTS):
            self._add_aligned(out_a, out_b)

    def _add_aligned(self, out_a: dict[str, np.ndarray], out_b: dict[str, np.ndarray]) -> None:
        """Errors after pairing each of A's top-K rows with B's row of the same class and nearest box,
        so that a reordering of nearly tied candidates does not count as an error."""
        boxes_a, scores_a, cls_a = (out_a[k] for k in HOST_NMS_OUTPUTS)
        boxes_b, scores_b, cls_b = (out_b[k] for k in HOST_NMS_OUTPUTS)
        for i in range(boxes_a.shape[0]):
            dist = np.abs(boxes_a[i][:, None, :].astype(np.float64) - boxes_b[i][None, :, :]).sum(-1)
            dist = np.where(cls_a[i][:, None] == cls_b[i][None, :], dist, np.inf)
            j = np.argmin(dist, axis=1)
            ok = np.isfinite(dist[np.arange(len(j)), j])
            pairs = {
                "boxes (aligned rows)": (boxes_a[i][ok], boxes_b[i][j[ok]]),
                "scores (aligned rows)": (scores_a[i][ok], scores_b[i][j[ok]]),
            }
            unpaired = int((~ok).sum())
            for name, (x, y) in pairs.items():
                self._accumulate(name, x[None], y[None], unpaired_rows=unpaired)

    def _accumulate(self, name: str, xa: np.ndarray, xb: np.ndarray, unpaired_rows: int = 0) -> None:
        x = xa.astype(np.float64)
        y = xb.astype(np.float64)
        diff = np.abs(x - y)
        denom = np.maximum(np.abs(x), np.abs(y))
        rel = np.divide(diff, denom, out=np.zeros_like(diff), where=denom > 0)
        shape = ["K", *xa.shape[2:]] if name.endswith("(aligned rows)") else list(xa.shape[1:])
        s = self.stats.setdefault(
            name,
            {"shape": shape, "dtype": str(xa.dtype), "n": 0, "sum_abs": 0.0, "max_abs": 0.0, "sum_rel": 0.0,
             "max_rel": 0.0, "differ": 0, "unpaired_rows": 0},
        )
        s["n"] += diff.size
        s["sum_abs"] += float(diff.sum())
        s["sum_rel"] += float(rel.sum())
        s["max_abs"] = max(s["max_abs"], float(diff.max(initial=0.0)))
        s["max_rel"] = max(s["max_rel"], float(rel.max(initial=0.0)))
        s["differ"] += int(np.count_nonzero(xa != xb))
        s["unpaired_rows"] += unpaired_rows

    def result(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, s in self.stats.items():
            n = max(1, s["n"])
            integer = np.issubdtype(np.dtype(s["dtype"]), np.integer)
            out[name] = {
                "shape": ["N", *s["shape"]],
                "dtype": s["dtype"],
                "max_abs": s["max_abs"],
                "mean_abs": s["sum_abs"] / n,
                "max_rel": s["max_rel"],
                "mean_rel": s["sum_rel"] / n,
                "mismatch": s["differ"] / n if integer else None,
            }
            if name.endswith("(aligned rows)"):
                out[name]["unpaired_rows"] = s["unpaired_rows"]
        return out


@dataclass(frozen=True)
class CompareOptions:
    """What :func:`compare` runs on and how.

    ``data`` = ``(annotation file, image folder)`` (``--data``/``--ann``/``--images``) adds COCO AP
    of both (on the first ``num_images`` images, default all); otherwise ``images``
    (``--image-dir``, first ``num_images``, default 32) or synthetic scenes of ``seed`` (``--seed``,
    default 16 scenes) are used. ``batch`` images go through each model at a time (``--batch``); a
    detection counts as matched at IoU >= ``match_iou`` (``--match-iou``).
    """

    data: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None
    images: str | os.PathLike[str] | None = None
    num_images: int | None = None
    seed: int = 0
    batch: int = 1
    match_iou: float = 0.5
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"--batch must be >= 1, got {self.batch}")
        check_ranges(("--batch", BATCH, self.batch), ("--num", COUNT, self.num_images), ("--seed", SEED, self.seed),
                     ("--match-iou", IOU, self.match_iou))


def _frames_source(
    options: CompareOptions, skipped: SkippedImages
) -> tuple[str, list[int | None], Callable[[int], np.ndarray | None]]:
    """(description, image ids or Nones, loader(k) -> BGR frame, or None when unreadable: in ``skipped``)."""
    num_images, images = options.num_images, options.images
    if options.data is not None:
        from ..data.coco import CocoDataset

        ds = CocoDataset(*options.data)
        ds.check_files()
        n = len(ds) if num_images is None else min(len(ds), num_images)
        return f"{ds.ann_file}", [ds.image_ids[i] for i in range(n)], lambda k: skipped.read(ds[k].path)
    if images is not None:
        from ..core.images import list_images

        files = list_images(images)
        if not files:
            raise InputError(f"no images in {images}", "pass a folder of .jpg/.png files to --images")
        files = files[: num_images or 32]
        return f"{images}", [None] * len(files), lambda k: skipped.read(files[k])
    from ..data.synth import render_scene

    n, seed = num_images or 16, options.seed

    def synth(k: int) -> np.ndarray:
        return render_scene(np.random.default_rng([seed, 7, k]), (480, 640))[0]

    return f"{n} synthetic 640x480 scenes, seed {seed}", [None] * n, synth


def _describe(model: Any, backend: Backend) -> dict[str, Any]:
    d: dict[str, Any] = {"path": None if isinstance(model, Backend) else str(model), **backend.describe()}
    d.setdefault("precision", backend.meta.precision)
    d["input_size"] = list(backend.meta.input_size)
    return d


def _check_pair(ba: Backend, bb: Backend) -> list[str]:
    """Refuse models of different classes; the notes on what cannot be compared."""
    if ba.meta.class_names != bb.meta.class_names:
        raise IncompatibleError(
            f"the models predict different classes: A {ba.meta.class_names[:6]}..., B {bb.meta.class_names[:6]}...",
            "compare two builds of the same model",
        )
    if ba.meta.input_size == bb.meta.input_size:
        return []
    return [
        f"input sizes differ (A {ba.meta.input_size}, B {bb.meta.input_size}): raw outputs are not comparable, "
        "only detections and AP are"
    ]


@dataclass
class _Tally:
    """What the batches add up to: raw-output errors, detection matches, COCO records of each model."""

    match_iou: float
    acc: _DiffAccumulator = field(default_factory=_DiffAccumulator)
    a_dets: int = 0
    b_dets: int = 0
    matched: int = 0
    iou_sum: float = 0.0
    score_sum: float = 0.0
    results: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"a": [], "b": []})

    def add_matches(self, da: list[Detections], db: list[Detections]) -> None:
        for x, y in zip(da, db):
            pairs = match_detections(x, y, self.match_iou)
            self.a_dets += len(x)
            self.b_dets += len(y)
            self.matched += len(pairs)
            self.iou_sum += sum(p[2] for p in pairs)
            self.score_sum += sum(abs(float(x.scores[i]) - float(y.scores[j])) for i, j, _ in pairs)

    def matching(self, post: PostprocessConfig) -> dict[str, float]:
        na, nb, m = self.a_dets, self.b_dets, self.matched
        return {
            "conf": post.conf,
            "nms_iou": post.iou,
            "match_iou": self.match_iou,
            "a_dets": float(na),
            "b_dets": float(nb),
            "matched": float(m),
            "matched_a": m / na if na else 1.0,
            "matched_b": m / nb if nb else 1.0,
            "mean_iou": self.iou_sum / m if m else 0.0,
            "mean_score_diff": self.score_sum / m if m else 0.0,
        }


@dataclass
class _Pair:
    """The two opened models, their detectors, and what a batch through both adds to a tally."""

    det_a: Any  # runtime.detector.Detector (imported lazily)
    det_b: Any
    same_input: bool
    eval_post: PostprocessConfig
    cat_ids: np.ndarray | None  # model class -> dataset category id, with a dataset

    def run_batch(self, tally: _Tally, frames: list[np.ndarray], image_ids: list[int | None]) -> None:
        xa, infos_a = self.det_a.preprocess(frames)
        out_a = self.det_a.backend.infer(xa)
        xb, infos_b = self.det_b.preprocess(frames)
        out_b = self.det_b.backend.infer(xb)
        if self.same_input:
            tally.acc.add(out_a, out_b)
        tally.add_matches(self.det_a.postprocess(out_a, infos_a), self.det_b.postprocess(out_b, infos_b))
        if self.cat_ids is not None:
            from ..evaluation.coco_eval import detections_to_coco

            for key, out, infos in (("a", out_a, infos_a), ("b", out_b, infos_b)):
                for iid, d in zip(image_ids, postprocess_with(out, infos, self.eval_post)):
                    tally.results[key].extend(detections_to_coco(int(iid), d, self.cat_ids))  # type: ignore[arg-type]


def _run_all(pair: _Pair, tally: _Tally, ids: list[int | None], load: Callable[[int], np.ndarray | None],
             batch: int, progress: bool) -> list[int | None]:
    """Both models on every frame ``load`` reads, ``batch`` at a time; the ids of the frames read."""
    done: list[int | None] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="compare", unit="img")
    try:
        for start in range(0, len(ids), batch):
            ks = list(range(start, min(start + batch, len(ids))))
            read = [(ids[k], frame) for k in ks if (frame := load(k)) is not None]
            if read:
                pair.run_batch(tally, [f for _, f in read], [i for i, _ in read])
                done.extend(i for i, _ in read)
            if bar is not None:
                bar.update(len(ks))
    finally:
        if bar is not None:
            bar.close()
    return done


def _ap(dataset: Any, tally: _Tally, ids: list[int | None]) -> dict[str, dict[str, float]]:
    from ..evaluation.coco_eval import coco_bbox_metrics

    image_ids = [int(i) for i in ids]  # type: ignore[arg-type]
    ma, _ = coco_bbox_metrics(dataset, tally.results["a"], image_ids)
    mb, _ = coco_bbox_metrics(dataset, tally.results["b"], image_ids)
    return {"a": ma, "b": mb, "delta": {k: round(mb[k] - ma[k], 4) for k in ma}}


# --- the comparison ------------------------------------------------------------------------------------
def compare(
    a: str | os.PathLike[str] | Backend,
    b: str | os.PathLike[str] | Backend,
    options: CompareOptions = CompareOptions(),
    post: PostprocessConfig = PostprocessConfig(),
    *,
    eval_post: PostprocessConfig | None = None,
    backend_kwargs_a: dict[str, Any] | None = None,
    backend_kwargs_b: dict[str, Any] | None = None,
    skipped: SkippedImages | None = None,
) -> CompareResult:
    """Compare model ``b`` against reference ``a`` (see the module docstring) on the images of
    ``options``; detections are matched after post-processing with ``post``, AP is computed with
    ``eval_post`` (default :meth:`PostprocessConfig.for_eval` with ``post.max_det``). An image that
    cannot be read is skipped (in ``skipped`` and ``CompareResult.skipped``); none readable is an error.
    """
    from ..evaluation.coco_eval import class_to_category_ids, open_model
    from ..runtime.detector import Detector

    eval_post = eval_post or PostprocessConfig.for_eval(post.max_det)
    skipped = skipped if skipped is not None else SkippedImages()
    source, ids, load = _frames_source(options, skipped)
    dataset = None
    tally = _Tally(options.match_iou)
    with contextlib.ExitStack() as stack:
        ba = stack.enter_context(open_model(a, **(backend_kwargs_a or {})))
        bb = stack.enter_context(open_model(b, **(backend_kwargs_b or {})))
        notes = _check_pair(ba, bb)
        cat_ids = None
        if options.data is not None:
            from ..data.coco import CocoDataset

            dataset = CocoDataset(*options.data)
            cat_ids = class_to_category_ids(ba.meta.class_names, dataset)
        pair = _Pair(Detector(ba, post, max_batch=options.batch), Detector(bb, post, max_batch=options.batch),
                     ba.meta.input_size == bb.meta.input_size, eval_post, cat_ids)
        ids = _run_all(pair, tally, ids, load, options.batch, options.progress)
        if not ids:
            raise skipped.none_readable(source)
        desc_a, desc_b = _describe(a, ba), _describe(b, bb)
    if tally.a_dets == 0 and tally.b_dets == 0:
        notes.append(f"neither model detected anything at conf {post.conf}: lower --conf to compare detections")
    if tally.acc.skipped:
        absent = ", ".join(sorted(tally.acc.skipped))
        notes.append(f"outputs not compared (absent or of different shape in one model): {absent}")
    ap = _ap(dataset, tally, ids) if dataset is not None else None
    return CompareResult(desc_a, desc_b, len(ids), source, tally.acc.result(), tally.matching(post), ap, notes,
                         list(skipped.items))


__all__ = ["CompareOptions", "CompareResult", "compare", "match_detections"]
