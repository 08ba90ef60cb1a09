"""A torch ``Dataset`` over COCO-format detection data, with the augmentations a detector needs.

Each sample is letterboxed into the model's fixed input (the same geometry as deployment,
:func:`detnet_trt.runtime.letterbox.letterbox_into`), so the network trains on exactly the kind of
uint8 BGR input it later receives from the runtime. With augmentation on, the letterboxed image
is first made ``r`` times the fitted size (random resize, ``r`` drawn from ``Augment.scale``) and
placed at a random offset in the input (crop when larger, pad when smaller), then flipped
horizontally and colour-jittered in HSV.

Augmentation is deterministic: sample ``i`` in epoch ``e`` draws its random numbers from a
generator seeded with ``(seed, e, i)``, so the result does not depend on which process or
DataLoader worker loads it. That is what lets a distributed run reproduce a single-process run.

Targets carry ``boxes`` float32 ``(M, 4)`` xyxy in input pixels and ``labels`` int64 ``(M,)``
contiguous class indices ``0..C-1`` (the :class:`~detnet_trt.data.coco.CocoDataset` mapping).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import InputError
from ..runtime.letterbox import PAD_VALUE, letterbox_into
from .coco import CocoDataset, read_image, resolve_coco_dir


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation settings (``None`` in place of an ``Augment`` = none).

    ``scale``: range of the random resize factor relative to the letterbox fit;
    ``translate``: place the resized image at a random offset (else centred);
    ``hflip``: probability of a horizontal flip;
    ``hsv``: maximum relative gains for hue, saturation and value;
    ``min_size``: boxes smaller than this (input pixels, either side) after cropping are dropped;
    ``min_visible``: boxes with less than this fraction of their area left inside are dropped.
    """

    scale: tuple[float, float] = (0.6, 1.4)
    translate: bool = True
    hflip: float = 0.5
    hsv: tuple[float, float, float] = (0.015, 0.6, 0.4)
    min_size: float = 2.0
    min_visible: float = 0.3


@dataclass(frozen=True)
class _Record:
    file: Path
    boxes: np.ndarray  # (M, 4) float32 xyxy, image pixels
    labels: np.ndarray  # (M,) int64 contiguous


def _records_from_coco(coco: CocoDataset) -> list[_Record]:
    """Boxes and contiguous labels of every image, read once (crowd regions are left out)."""
    return [_Record(item.path, item.boxes.astype(np.float32), item.labels.astype(np.int64)) for item in coco]


class DetectionDataset(Dataset):
    """COCO-format images + instances JSON -> ``(uint8 image tensor, target dict)`` samples.

    ``input_size`` is ``(H, W)``; ``layout`` is the model's (``nchw`` gives ``3 x H x W``).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        input_size: tuple[int, int],
        *,
        augment: Augment | None = None,
        seed: int = 0,
        layout: str = "nchw",
    ) -> None:
        if layout not in ("nchw", "nhwc"):
            raise InputError(f"unknown layout {layout!r}", "use 'nchw' or 'nhwc'")
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        self.coco = CocoDataset(self.ann_file, self.image_dir)
        self.class_names: list[str] = list(self.coco.class_names)
        self.records = _records_from_coco(self.coco)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment = augment
        self.seed = int(seed)
        self.layout = layout
        self.epoch = 0

    @classmethod
    def from_dir(
        cls, data_dir: str | os.PathLike[str], split: str, input_size: tuple[int, int], **kwargs: object
    ) -> DetectionDataset:
        """The ``split`` (``train``/``val``) of a COCO-layout folder (see ``resolve_coco_dir``)."""
        ann_file, image_dir = resolve_coco_dir(data_dir, split)
        return cls(ann_file, image_dir, input_size, **kwargs)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation draws (call before each epoch, like a sampler's)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw BGR image and its boxes (image pixels) and labels."""
        rec = self.records[index]
        return read_image(rec.file), rec.boxes.copy(), rec.labels.copy()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, boxes, labels = self.load(index)
        h, w = self.input_size
        out = np.empty((h, w, 3), np.uint8)
        if self.augment is None:
            info = letterbox_into(img, out, "nhwc")
            boxes = info.to_input(boxes) if len(boxes) else boxes.reshape(0, 4).astype(np.float32)
        else:
            rng = np.random.default_rng((self.seed, self.epoch, int(index)))
            boxes, labels = _random_resize_place(img, boxes, labels, out, self.augment, rng)
            if rng.random() < self.augment.hflip:
                out = np.ascontiguousarray(out[:, ::-1])
                boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            _hsv_jitter(out, self.augment.hsv, rng)
        image = torch.from_numpy(out.transpose(2, 0, 1).copy() if self.layout == "nchw" else out)
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)),
        }
        return image, target


def _random_resize_place(
    img: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    out: np.ndarray,
    aug: Augment,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox ``img`` into a canvas ``r`` times the input, paste it into ``out`` at a random
    offset (cropping or padding), and move/clip/filter the boxes to match."""
    h, w = out.shape[:2]
    r = float(rng.uniform(*aug.scale))
    ch, cw = max(1, round(h * r)), max(1, round(w * r))
    canvas = np.empty((ch, cw, 3), np.uint8)
    info = letterbox_into(img, canvas, "nhwc")
    if aug.translate:
        ox = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
        oy = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
    else:
        ox, oy = (w - cw) // 2, (h - ch) // 2
    out[...] = PAD_VALUE
    # overlap of canvas (placed at ox, oy) with out
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(w, ox + cw), min(h, oy + ch)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = canvas[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    b = info.to_input(boxes)
    b[:, 0::2] += ox
    b[:, 1::2] += oy
    area0 = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    b[:, 0::2] = b[:, 0::2].clip(0, w)
    b[:, 1::2] = b[:, 1::2].clip(0, h)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (bw >= aug.min_size) & (bh >= aug.min_size) & (bw * bh >= aug.min_visible * np.maximum(area0, 1e-6))
    return b[keep].astype(np.float32), np.asarray(labels)[keep].astype(np.int64)


def _hsv_jitter(img: np.ndarray, gains: tuple[float, float, float], rng: np.random.Generator) -> None:
    """Random hue/saturation/value gains applied in place to a BGR uint8 image (lookup tables)."""
    if not any(gains):
        return
    g = rng.uniform(-1.0, 1.0, 3) * np.asarray(gains) + 1.0
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * g[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * g[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * g[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)


def collate(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Stack images into one uint8 batch tensor; keep targets as a list (boxes vary per image)."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


def worker_init(worker_id: int) -> None:
    """DataLoader worker setup: OpenCV single-threaded (workers already run in parallel)."""
    cv2.setNumThreads(0)
