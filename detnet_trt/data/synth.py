"""Synthetic COCO-format detection data with a known answer.

:func:`make_synth_dataset` draws scenes of a handful of object classes (distinct shapes, each
with its own texture family) at varied scales, with partial occlusion, clutter (distractor
strokes and blobs that are not objects) and varied backgrounds, and writes them in COCO's own
layout::

    OUT/annotations/instances_train.json    OUT/images/train/000000000001.jpg ...
    OUT/annotations/instances_val.json      OUT/images/val/...

Category ids are deliberately non-contiguous (as COCO's are), so every consumer must go through
the id <-> index mapping of :mod:`detnet_trt.data.coco`. Boxes are COCO ``[x, y, w, h]`` of the
*visible* part of each object (occluders are accounted for); ``area`` is the visible pixel count.
Objects hidden by more than half are never generated (placement is retried), so every box shows
enough of its object to be detectable.

Everything is drawn with OpenCV from a NumPy generator seeded by ``(seed, split, index)``: the
same seed gives the same pixels and the same JSON, and a few hundred 320 x 320 images take
seconds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..core.errors import InputError, OutputExistsError
from ..core.fileio import atomic_write_bytes, atomic_write_text
from ..core.limits import MODEL_SIDE, SEED, SYNTH_IMAGES, SYNTH_OBJECTS, check_ranges

# (COCO-style category id, name). Ids are non-contiguous on purpose.
CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "circle"),
    (3, "square"),
    (7, "triangle"),
    (12, "star"),
    (18, "ring"),
    (25, "cross"),
)
CLASS_NAMES = tuple(name for _, name in CATEGORIES)
SPLITS = ("train", "val")

_MIN_VISIBLE = 0.5  # an object keeps at least this fraction of its pixels visible
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class _Obj:
    cls: int  # index into CATEGORIES
    mask: np.ndarray  # bool H x W (full silhouette)


# --- shapes ----------------------------------------------------------------------------------
def _polygon(cx: float, cy: float, radii: list[float], angle0: float) -> np.ndarray:
    n = len(radii)
    pts = [
        (cx + r * math.cos(angle0 + 2 * math.pi * k / n), cy + r * math.sin(angle0 + 2 * math.pi * k / n))
        for k, r in enumerate(radii)
    ]
    return np.round(np.array(pts, np.float32) * 16).astype(np.int32)  # 4 fractional bits


def _shape_mask(cls: int, hw: tuple[int, int], cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """Silhouette of class ``cls`` centred at ``(cx, cy)`` with circumradius ``r``."""
    m = np.zeros(hw, np.uint8)
    name = CLASS_NAMES[cls]
    rot = float(rng.uniform(0, 2 * math.pi))
    sh = 4  # fractional bits for sub-pixel drawing
    c = (int(round(cx * 16)), int(round(cy * 16)))
    if name == "circle":
        cv2.circle(m, c, int(round(r * 16)), 1, -1, cv2.LINE_8, sh)
    elif name == "ring":
        thick = max(2, int(round(r * rng.uniform(0.25, 0.4))))
        cv2.circle(m, c, int(round((r - thick / 2) * 16)), 1, thick, cv2.LINE_8, sh)
    elif name == "square":
        cv2.fillPoly(m, [_polygon(cx, cy, [r] * 4, rot)], 1, cv2.LINE_8, sh)
    elif name == "triangle":
        cv2.fillPoly(m, [_polygon(cx, cy, [r] * 3, rot)], 1, cv2.LINE_8, sh)
    elif name == "star":
        inner = r * rng.uniform(0.38, 0.5)
        cv2.fillPoly(m, [_polygon(cx, cy, [r, inner] * 5, rot)], 1, cv2.LINE_8, sh)
    elif name == "cross":
        a = r * rng.uniform(0.28, 0.38)  # half arm width
        pts = [(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r),
               (-a, -r), (-a, -a), (-r, -a), (-r, a), (-a, a), (-a, r)]
        cs, sn = math.cos(rot), math.sin(rot)
        poly = np.array([(cx + x * cs - y * sn, cy + x * sn + y * cs) for x, y in pts], np.float32)
        cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, sh)
    else:  # pragma: no cover - CATEGORIES and this function are edited together
        raise ValueError(name)
    return m.astype(bool)


# --- textures --------------------------------------------------------------------------------
def _color(rng: np.random.Generator, lo: int = 30, hi: int = 255) -> np.ndarray:
    return rng.integers(lo, hi, 3).astype(np.float32)


def _texture(cls: int, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A float32 H x W x 3 fill whose family depends on the class (colours are random)."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = _color(rng), _color(rng)
    name = CLASS_NAMES[cls]
    if name == "circle":  # radial gradient
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.clip(np.hypot(xx - cx, yy - cy) / max(h, w), 0, 1)[..., None]
    elif name == "square":  # stripes
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(5, 12)
        t = (np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period) > 0)[..., None].astype(np.float32)
    elif name == "triangle":  # checker
        p = int(rng.integers(4, 10))
        t = (((xx // p) + (yy // p)) % 2)[..., None]
    elif name == "star":  # flat colour
        t = np.zeros((h, w, 1), np.float32)
    elif name == "ring":  # fine noise
        t = rng.random((h, w, 1), dtype=np.float32)
    else:  # cross: dots
        p = int(rng.integers(5, 9))
        t = ((((xx % p) - p / 2) ** 2 + ((yy % p) - p / 2) ** 2) < (p / 3.2) ** 2)[..., None].astype(np.float32)
    return c1 * (1 - t) + c2 * t


def _background(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = hw
    kind = int(rng.integers(0, 4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = _color(rng, 0, 256), _color(rng, 0, 256)
    if kind == 0:  # linear gradient
        ang = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(ang) + yy * math.sin(ang)) / (h + w)
        t = ((t - t.min()) / max(float(np.ptp(t)), 1e-6))[..., None]
    elif kind == 1:  # smooth blotches (upsampled noise)
        small = rng.random((h // 32 + 2, w // 32 + 2, 1), dtype=np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    elif kind == 2:  # flat with grain
        t = rng.random((h, w, 1), dtype=np.float32) * 0.25
    else:  # soft tiles
        p = int(rng.integers(24, 64))
        t = (((xx // p) + (yy // p)) % 2)[..., None] * 0.3
    return c1 * (1 - t) + c2 * t


def _clutter(img: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` distractors (lines, arcs, irregular blobs) on ``img``; returns their mask."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            t = int(rng.integers(1, 4))
            cv2.line(img, p1, p2, color, t, cv2.LINE_AA)
            cv2.line(mask, p1, p2, 1, t)
        elif kind == 1:
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            ax = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
            a0 = float(rng.uniform(0, 360))
            args = (c, ax, float(rng.uniform(0, 180)), a0, a0 + float(rng.uniform(60, 200)))
            cv2.ellipse(img, *args, color, 2, cv2.LINE_AA)
            cv2.ellipse(mask, *args, 1, 2)
        else:  # irregular blob: random radii, not one of the classes' regular outlines
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 14)
            k = int(rng.integers(5, 9))
            poly = _polygon(cx, cy, list(r * rng.uniform(0.4, 1.0, k)), float(rng.uniform(0, 6.3)))
            cv2.fillPoly(img, [poly], color, cv2.LINE_AA, 4)
            cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


# --- scenes ----------------------------------------------------------------------------------
def render_scene(
    rng: np.random.Generator, size: tuple[int, int] = (320, 320), max_objects: int = 8
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One BGR uint8 scene and its objects: ``[{"class_index", "bbox" (x, y, w, h), "area"}]``."""
    h, w = size
    img = _background((h, w), rng)
    img = np.clip(img, 0, 255).astype(np.uint8)
    _clutter(img, rng, int(rng.integers(2, 9)))
    owner = np.full((h, w), -1, np.int16)  # which object each visible pixel belongs to
    objs: list[_Obj] = []
    n_obj = int(rng.integers(1, max_objects + 1))
    min_side = min(h, w)
    for _ in range(n_obj):
        for _try in range(6):
            cls = int(rng.integers(0, len(CATEGORIES)))
            # log-uniform circumradius: small, medium and large objects all occur
            r = float(math.exp(rng.uniform(math.log(0.035 * min_side), math.log(0.3 * min_side))))
            cx, cy = float(rng.uniform(r * 0.6, w - r * 0.6)), float(rng.uniform(r * 0.6, h - r * 0.6))
            m = _shape_mask(cls, (h, w), cx, cy, r, rng)
            if m.sum() < 30:
                continue
            covered = owner[m]
            ok = True
            for j in np.unique(covered[covered >= 0]):
                visible = int((owner == j).sum())
                lost = int((covered == j).sum())
                if visible - lost < _MIN_VISIBLE * int(objs[j].mask.sum()):
                    ok = False
                    break
            if not ok:
                continue
            ys, xs = np.nonzero(m)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            tex = _texture(cls, (y1 - y0, x1 - x0), rng)
            sub = m[y0:y1, x0:x1]
            region = img[y0:y1, x0:x1]
            region[sub] = np.clip(tex[sub], 0, 255).astype(np.uint8)
            owner[m] = len(objs)
            objs.append(_Obj(cls, m))
            break
    # a few distractors on top: they occlude objects a little (visibility re-checked below)
    top = _clutter(img, rng, int(rng.integers(0, 4)))
    owner[top] = -1
    img = cv2.GaussianBlur(img, (3, 3), float(rng.uniform(0.3, 0.9)))
    noise = rng.normal(0, float(rng.uniform(1, 6)), img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    records = []
    for i, o in enumerate(objs):
        vis = owner == i
        area = int(vis.sum())
        if area < _MIN_VISIBLE * 0.8 * int(o.mask.sum()) or area < 20:
            continue  # pragma: no cover - rare: mostly hidden by top clutter; drop rather than mislabel
        ys, xs = np.nonzero(vis)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        records.append({"class_index": o.cls, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": area})
    return img, records


def _split_counts(images: int, val_fraction: float) -> dict[str, int]:
    n_val = max(1, int(round(images * val_fraction)))
    return {"train": images - n_val, "val": n_val}


def make_synth_dataset(
    out: str | os.PathLike[str],
    *,
    images: int = 500,
    seed: int = 0,
    size: tuple[int, int] = (320, 320),
    val_fraction: float = 0.2,
    max_objects: int = 8,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write a synthetic COCO-format dataset under ``out`` and return ``out``.

    ``images`` is the total over both splits; ``round(images * val_fraction)`` (at least 1) go to
    ``val``, the rest to ``train``. ``size`` is ``(H, W)``. Deterministic for ``seed``.
    Refuses to write into an existing dataset unless ``force``.
    """
    if images < 2:
        raise InputError(f"--images must be at least 2 (one train and one val image), got {images}")
    check_ranges(("--images", SYNTH_IMAGES, images), ("--seed", SEED, seed), ("--max-objects", SYNTH_OBJECTS, max_objects),
                 *(("--size", MODEL_SIDE, side) for side in size))
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise InputError(f"image size must be at least 32 x 32, got {h} x {w}")
    root = Path(out)
    anns = [root / "annotations" / f"instances_{s}.json" for s in SPLITS]
    existing = [p for p in anns if p.exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} already exists", "pass --force to overwrite the dataset")
    counts = _split_counts(images, val_fraction)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=images, desc="synth", unit="img")
    try:
        for split_idx, split in enumerate(SPLITS):
            coco = _write_split(root, split_idx, split, counts[split], seed, (h, w), max_objects, bar)
            atomic_write_text(root / "annotations" / f"instances_{split}.json", json.dumps(coco), force=True)
    finally:
        if bar is not None:
            bar.close()
    return root


def _write_split(  # 8 parameters: the split's place in the dataset plus make_synth_dataset's settings
    root: Path,
    split_idx: int,
    split: str,
    count: int,
    seed: int,
    hw: tuple[int, int],
    max_objects: int,
    bar: Any,
) -> dict[str, Any]:
    """Render and write the ``count`` images of ``split``; returns its COCO annotation dict."""
    h, w = hw
    img_dir = root / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {
        "info": {"description": "detnet-trt synthetic shapes", "version": "1", "seed": seed, "split": split},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in CATEGORIES],
    }
    for i in range(count):
        rng = np.random.default_rng([seed, split_idx, i])
        img, recs = render_scene(rng, (h, w), max_objects)
        image_id = i + 1
        fname = f"{image_id:012d}.jpg"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise RuntimeError("JPEG encoding failed")
        atomic_write_bytes(img_dir / fname, buf.tobytes())
        coco["images"].append({"id": image_id, "file_name": fname, "width": w, "height": h})
        for r in recs:
            coco["annotations"].append(_annotation(len(coco["annotations"]) + 1, image_id, r))
        if bar is not None:
            bar.update(1)
    return coco


def _annotation(ann_id: int, image_id: int, rec: dict[str, Any]) -> dict[str, Any]:
    """One COCO annotation of a :func:`render_scene` record."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": CATEGORIES[rec["class_index"]][0],
        "bbox": [float(v) for v in rec["bbox"]],
        "area": float(rec["area"]),
        "iscrowd": 0,
    }


__all__ = ["CATEGORIES", "CLASS_NAMES", "make_synth_dataset", "render_scene"]
