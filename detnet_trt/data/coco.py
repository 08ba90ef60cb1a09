"""COCO-format detection datasets: find the files, map category ids, read boxes.

Layout (COCO's own; the synthetic data of :mod:`detnet_trt.data.synth` uses it too)::

    DIR/annotations/instances_<split>.json
    DIR/<split>/*.jpg          or          DIR/images/<split>/*.jpg

:func:`resolve_coco_dir` finds the annotation file and image folder of a split (``val`` by
default; ``val2017`` for a stock COCO 2017 download). :class:`CocoDataset` reads one annotation
file with the standard library's ``json`` (no pycocotools needed to train) and maps the
dataset's category ids, which need not be contiguous (COCO's run 1..90 with gaps), to the
contiguous class indices 0..C-1 a model predicts, in increasing id order. Boxes come out as
``xyxy`` float32 in image pixels; crowd regions are left out unless asked for.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.images import list_images, read_image

_log = logging.getLogger(__name__)

_FIX = "fix or remove it: a COCO annotation has an integer 'id', an 'image_id' of 'images', a 'category_id' of " \
    "'categories' and a 'bbox' [x, y, width, height] of four numbers with width and height >= 0"


def _whole(value: Any) -> int | None:
    """``value`` as an id (an int, an integral float or a string of digits), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _records(data: dict[str, Any], key: str, file: Path) -> list[dict[str, Any]]:
    records = data[key]
    if not isinstance(records, list):
        raise InputError(f"{file}: {key!r} is a {type(records).__name__}, not a list", "pass a COCO instances_*.json")
    for k, r in enumerate(records):
        if not isinstance(r, dict):
            raise InputError(f"{file}: {key}[{k}] is a {type(r).__name__}, not an object", "pass a COCO instances_*.json")
    return records


def _ids(records: list[dict[str, Any]], what: str, file: Path) -> set[int]:
    """The ids of ``images`` or ``categories`` records: each present, whole, and unique."""
    seen: set[int] = set()
    for k, r in enumerate(records):
        rid = _whole(r.get("id"))
        if rid is None:
            has = "no id" if "id" not in r else f"id {r['id']!r}, not an integer"
            raise InputError(f"{file}: {what} #{k} has {has}", f"give every {what} an integer 'id'")
        if rid in seen:
            raise InputError(f"{file}: {what} id {rid} appears twice", f"give every {what} its own id")
        seen.add(rid)
        r["id"] = rid
    return seen


def _bbox_problem(bbox: Any) -> str | None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return f"bbox {bbox!r} is not 4 numbers [x, y, width, height]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return f"bbox {list(bbox)!r} holds a value that is not a finite number"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox {list(bbox)!r} has a negative {'width' if bbox[2] < 0 else 'height'}"
    return None


def _check_annotations(data: dict[str, Any], file: Path, image_ids: set[int], cat_ids: set[int]) -> list[Any]:
    """Every annotation's problem raises, naming it; returns the ids of the zero-area boxes."""
    seen: set[int] = set()
    empty: list[Any] = []
    for k, a in enumerate(_records(data, "annotations", file)):
        aid = _whole(a.get("id"))
        name = f"annotation {aid}" if aid is not None else f"annotation #{k}"
        problem = None
        if aid is None:
            problem = "has no id" if "id" not in a else f"has id {a['id']!r}, not an integer"
        elif aid in seen:
            problem = "appears twice (the same id)"
        elif "image_id" not in a:
            problem = "has no image_id"
        elif _whole(a["image_id"]) not in image_ids:
            problem = f"refers to image {a['image_id']!r}, which is not in 'images'"
        elif "category_id" not in a:
            problem = "has no category_id"
        elif _whole(a["category_id"]) not in cat_ids:
            problem = f"has category {a['category_id']!r}, which is not in 'categories'"
        elif "bbox" not in a:
            problem = "has no bbox"
        else:
            problem = _bbox_problem(a["bbox"])
        if problem is not None:
            raise InputError(f"{file}: {name} {problem}", _FIX)
        seen.add(aid)  # type: ignore[arg-type]
        a["id"], a["image_id"], a["category_id"] = aid, _whole(a["image_id"]), _whole(a["category_id"])
        if a["bbox"][2] == 0 or a["bbox"][3] == 0:
            empty.append(aid)
    return empty


def read_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A COCO instances file, checked record by record: a malformed category, image or annotation
    (no id, an unknown image or category, a bbox that is not four finite numbers or has a negative
    width or height) raises :class:`InputError` naming the file, the record and the problem.

    Boxes of zero width or height are kept in the data (COCO's own train2017 has two, annotations
    918 and 2206849) and left out of the targets by :class:`CocoDataset`; a warning counts them.
    A missing ``area`` (pycocotools needs it) is filled with ``width * height``.
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"annotation file {file} not found", "pass a COCO instances_*.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{file} is not valid JSON: {err}", "pass a COCO instances_*.json") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise InputError(
            f"{file} is not a COCO instances file",
            "expected a JSON object with 'images', 'annotations' and 'categories'",
        )
    cats = _records(data, "categories", file)
    if not cats:
        raise InputError(f"{file}: no categories", "list the classes under 'categories'")
    cat_ids = _ids(cats, "category", file)
    for c in cats:
        if not isinstance(c.get("name"), str) or not c["name"]:
            raise InputError(f"{file}: category {c['id']} has no name", "give every category a 'name'")
    images = _records(data, "images", file)
    image_ids = _ids(images, "image", file)
    for im in images:
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise InputError(f"{file}: image {im['id']} has no file_name", "give every image its 'file_name'")
    empty = _check_annotations(data, file, image_ids, cat_ids)
    for a in data["annotations"]:
        a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
    if empty:
        shown = ", ".join(str(i) for i in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        _log.warning("%s: %d box(es) of zero width or height left out of the targets (annotation %s)",
                     file, len(empty), shown)
    return data


def resolve_coco_dir(data_dir: str | os.PathLike[str], split: str = "val") -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of ``split`` under a COCO-layout ``data_dir``.

    Looks for ``data_dir/annotations/instances_<split>.json`` and the images in
    ``data_dir/<split>/`` or ``data_dir/images/<split>/`` (first that exists).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist", "pass a COCO-layout folder to --data")
    ann = root / "annotations" / f"instances_{split}.json"
    if not ann.is_file():
        ann_dir = root / "annotations"
        found = sorted(p.name for p in ann_dir.glob("instances_*.json")) if ann_dir.is_dir() else []
        hint = (
            f"found {', '.join(found)}: pick one with --split" if found
            else "expected DIR/annotations/instances_<split>.json, or pass --ann FILE --images DIR"
        )
        raise InputError(f"{ann} not found", hint)
    candidates = [root / split, root / "images" / split]
    for img_dir in candidates:
        if img_dir.is_dir():
            return ann, img_dir
    raise InputError(
        f"no image folder for split {split!r} under {root}",
        f"expected {candidates[0]} or {candidates[1]}, or pass --images DIR",
    )


def resolve_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "val",
    ann_file: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """The CLI's rule: ``--ann FILE --images DIR`` together, or ``--data DIR [--split S]``."""
    if ann_file is not None or image_dir is not None:
        if ann_file is None or image_dir is None:
            raise InputError("--ann and --images go together", "pass both, or use --data DIR")
        ann, imgs = Path(ann_file), Path(image_dir)
        if not ann.is_file():
            raise InputError(f"annotation file {ann} not found", "pass a COCO instances_*.json to --ann")
        if not imgs.is_dir():
            raise InputError(f"image folder {imgs} not found", "pass the folder holding the images to --images")
        return ann, imgs
    if data_dir is None:
        raise InputError("no dataset given", "pass --data DIR (COCO layout) or --ann FILE --images DIR")
    return resolve_coco_dir(data_dir, split)


@dataclass
class CocoImage:
    """One image with its ground truth: ``boxes`` (M, 4) xyxy float32 pixels, ``labels`` (M,) int64
    contiguous class indices, ``category_ids`` (M,) the dataset's own ids."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray

    def load(self) -> np.ndarray:
        """The image as an H x W x 3 BGR uint8 array."""
        return read_image(self.path)



class CocoDataset:
    """A COCO instances file and its image folder.

    >>> ds = CocoDataset(*resolve_coco_dir("data/synth", "val"))
    >>> ds.class_names, ds.cat_ids          # ordered by category id
    >>> item = ds[0]; frame = item.load()   # CocoImage: boxes xyxy, labels 0..C-1
    >>> ds.index_to_cat_id[item.labels]     # back to the dataset's ids (for results JSON)
    """

    def __init__(
        self, ann_file: str | os.PathLike[str], image_dir: str | os.PathLike[str], *, include_crowd: bool = False
    ) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.include_crowd = include_crowd
        data = read_coco_json(self.ann_file)
        cats = sorted(data["categories"], key=lambda c: int(c["id"]))
        self.categories: list[dict[str, Any]] = cats
        self.cat_ids: list[int] = [int(c["id"]) for c in cats]
        self.class_names: list[str] = [str(c["name"]) for c in cats]
        self.cat_id_to_index: dict[int, int] = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.index_to_cat_id = np.asarray(self.cat_ids, np.int64)
        self.images: dict[int, dict[str, Any]] = {int(im["id"]): im for im in data["images"]}
        self.image_ids: list[int] = sorted(self.images)
        self._anns: dict[int, list[dict[str, Any]]] = {i: [] for i in self.image_ids}
        for a in data["annotations"]:
            self._anns[int(a["image_id"])].append(a)
        self.raw = data

    @classmethod
    def from_dir(cls, data_dir: str | os.PathLike[str], split: str = "val", **kwargs: Any) -> CocoDataset:
        """The ``split`` of a COCO-layout folder (see :func:`resolve_coco_dir`)."""
        return cls(*resolve_coco_dir(data_dir, split), **kwargs)

    # --- mapping ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def to_index(self, category_ids: Any) -> np.ndarray:
        """Dataset category ids -> contiguous indices 0..C-1."""
        ids = np.asarray(category_ids, np.int64).reshape(-1)
        try:
            return np.asarray([self.cat_id_to_index[int(c)] for c in ids], np.int64)
        except KeyError as err:
            raise InputError(f"category id {err.args[0]} is not in {self.ann_file}") from None

    def to_cat_id(self, indices: Any) -> np.ndarray:
        """Contiguous indices 0..C-1 -> the dataset's category ids."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_classes):
            raise InputError(f"class index out of range 0..{self.num_classes - 1}: {idx.min()}..{idx.max()}")
        return self.index_to_cat_id[idx]

    # --- images ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def __iter__(self) -> Iterator[CocoImage]:
        for i in range(len(self)):
            yield self[i]

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / str(self.images[image_id]["file_name"])

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        """Raw COCO annotation dicts of one image (crowd ones included)."""
        return self._anns[image_id]

    def __getitem__(self, idx: int) -> CocoImage:
        image_id = self.image_ids[idx]
        im = self.images[image_id]
        anns = [a for a in self._anns[image_id] if self.include_crowd or not a.get("iscrowd", 0)]
        boxes = np.zeros((len(anns), 4), np.float32)
        cids = np.zeros((len(anns),), np.int64)
        crowd = np.zeros((len(anns),), bool)
        for k, a in enumerate(anns):
            x, y, w, h = (float(v) for v in a["bbox"])
            boxes[k] = (x, y, x + w, y + h)
            cids[k] = int(a["category_id"])
            crowd[k] = bool(a.get("iscrowd", 0))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # drop degenerate boxes
        boxes, cids, crowd = boxes[keep], cids[keep], crowd[keep]
        return CocoImage(
            image_id=image_id,
            path=self.image_path(image_id),
            width=int(im.get("width", 0)),
            height=int(im.get("height", 0)),
            boxes=boxes,
            labels=self.to_index(cids),
            category_ids=cids,
            iscrowd=crowd,
        )

    def check_files(self, limit: int | None = None) -> None:
        """Raise :class:`InputError` naming the first image file that is missing."""
        for n, iid in enumerate(self.image_ids):
            if limit is not None and n >= limit:
                break
            p = self.image_path(iid)
            if not p.is_file():
                raise InputError(
                    f"image {p} listed in {self.ann_file} does not exist",
                    "point --images (or --data) at the folder holding the dataset's images",
                )



__all__ = ["CocoDataset", "CocoImage", "list_images", "read_coco_json", "read_image", "resolve_coco_dir",
           "resolve_dataset"]
