"""Stand-ins for the camera tests: a backend of known latency that really "detects" bright blobs,
a fake live camera that can fail and come back, and a video writer helper.

The backend is a legitimate stand-in for testing the loop (timing, order, reconnects, outputs);
tests of the real model through the loop use the ``tiny_onnx`` fixture.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.backends.base import Backend

CLASSES = ["blob", "other", "third"]


class BlobBackend(Backend):
    """Top-K outputs (``boxes``, ``scores``, ``class_ids``) of a known latency (``time.sleep``).

    Row 0 is the bounding box (input pixels) of pixels brighter than 200, score 0.9, class 0 (or a
    score-0 box when there is none); rows 1.. are low-score (0.01) filler, as a real top-K has.

    ``per_image`` seconds are added per image of a batch (a fixed-cost-per-call stand-in for
    batching: ``latency + n * per_image``); ``max_batch`` limits the batch as an engine's does;
    ``batch_sizes`` records the batch of every call.
    """

    name = "blob"

    def __init__(self, latency: float = 0.0, input_size: tuple[int, int] = (64, 64), layout: str = "nchw", topk: int = 16,
                 per_image: float = 0.0, max_batch: int | None = None):
        super().__init__(ModelMeta("blob-standin", CLASSES, input_size, layout=layout, topk=topk), max_batch)
        self.latency = latency
        self.per_image = per_image
        self.calls = 0
        self.batch_sizes: list[int] = []

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n, k = images.shape[0], self.meta.topk
        t_end = time.perf_counter() + self.latency + n * self.per_image
        self.batch_sizes.append(n)
        boxes = np.zeros((n, k, 4), np.float32)
        boxes[:, 1:] = [4.0, 4.0, 12.0, 12.0]
        scores = np.full((n, k), 0.01, np.float32)
        cls = np.zeros((n, k), np.int32)
        for i in range(n):
            img = images[i].max(axis=0) if self.meta.layout == "nchw" else images[i].max(axis=-1)
            ys, xs = np.nonzero(img > 200)
            if xs.size:
                boxes[i, 0] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                scores[i, 0] = 0.9
            else:
                scores[i, 0] = 0.0
        self.calls += 1
        left = t_end - time.perf_counter()
        if left > 0:
            time.sleep(left)
        return {"boxes": boxes, "scores": scores, "class_ids": cls}


def blob_frame(i: int, size: tuple[int, int] = (120, 160), y: int = 40) -> np.ndarray:
    """A dark frame with a white 16x16 square at x = 8 + 4*(i % 30), ``y`` (frame i of a test video)."""
    h, w = size
    img = np.full((h, w, 3), 30, np.uint8)
    x = blob_x(i)
    img[y : y + 16, x : x + 16] = 255
    return img


def blob_x(i: int) -> int:
    return 8 + 4 * (i % 30)


def write_video(path: Path, frames: int, fps: float = 30.0, size: tuple[int, int] = (120, 160), y: int = 40) -> Path:
    """``frames`` of :func:`blob_frame` (the blob at height ``y``: tells the videos of a multi-stream test apart)."""
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(blob_frame(i, size, y))
    writer.release()
    return path


class FakeCamera:
    """A ``cv2.VideoCapture``-like live camera at ``fps``; ``read()`` fails after ``fail_after`` frames.

    ``counter`` is shared between reopenings, so frame content keeps counting across reconnects.
    """

    def __init__(self, fps: float = 200.0, fail_after: int | None = None, counter: list[int] | None = None, y: int = 40):
        self.period = 1.0 / fps
        self.y = y
        self.fail_after = fail_after
        self.counter = counter if counter is not None else [0]
        self.delivered = 0
        self.released = False
        self._next = time.perf_counter()

    def isOpened(self) -> bool:
        return not self.released

    def get(self, prop: int) -> float:
        return 1.0 / self.period if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.released or (self.fail_after is not None and self.delivered >= self.fail_after):
            return False, None
        self._next += self.period
        left = self._next - time.perf_counter()
        if left > 0:
            time.sleep(left)
        i = self.counter[0]
        self.counter[0] += 1
        self.delivered += 1
        return True, blob_frame(i, y=self.y)

    def release(self) -> None:
        self.released = True


class FlakyOpener:
    """``opener()`` for :class:`~detnet_trt.apps.camera.sources.LiveSource`: scripted outcomes per call.

    ``plan`` items: an int N (a camera that fails after N frames), ``None`` (a camera that never
    fails) or ``"fail"`` (opening fails). Calls beyond the plan repeat its last item.
    """

    def __init__(self, plan: list, fps: float = 200.0, y: int = 40):
        self.plan = plan
        self.fps = fps
        self.y = y
        self.calls = 0
        self.counter = [0]
        self.lock = threading.Lock()

    def __call__(self) -> FakeCamera:
        with self.lock:
            item = self.plan[min(self.calls, len(self.plan) - 1)]
            self.calls += 1
        if item == "fail":
            raise OSError("camera not there (scripted)")
        return FakeCamera(self.fps, item, self.counter, self.y)
