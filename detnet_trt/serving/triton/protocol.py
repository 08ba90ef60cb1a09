"""The request/response contract shared by ``detnet-trt serve``, the ``export-triton`` ensemble
and ``detnet-trt client``, so one client talks to either server.

Request (per image; Triton adds the batch dimension, dynamic batching groups requests):

- ``images``: uint8, the model input of one image (``3 x H x W`` for ``nchw`` models, ``H x W x 3``
  for ``nhwc``), letterboxed by :mod:`detnet_trt.runtime.letterbox` (the client does this);
- ``orig_size``: int32 ``[2]``, the original image's ``(height, width)``; boxes come back in
  original-image pixels. A value ``<= 0`` keeps boxes in model-input pixels.

Response (per image, padded to ``max_det`` rows, names as the in-graph NMS outputs of
:mod:`detnet_trt.core.meta`):

- ``det_boxes`` float32 ``[max_det, 4]`` xyxy, ``det_scores`` float32 ``[max_det]``,
  ``det_class_ids`` int32 ``[max_det]`` (``-1`` in padding rows), ``num_dets`` int32 ``[1]``.

This module needs only NumPy (and :mod:`detnet_trt.core.errors`): the Python-backend model of an exported repository carries a copy
of it (see :mod:`detnet_trt.serving.triton.repository`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...core.errors import DetnetError

IMAGES = "images"
ORIG_SIZE = "orig_size"
DET_BOXES = "det_boxes"
DET_SCORES = "det_scores"
DET_CLASS_IDS = "det_class_ids"
NUM_DETS = "num_dets"
OUTPUTS = (DET_BOXES, DET_SCORES, DET_CLASS_IDS, NUM_DETS)


def pack_detections(dets: Sequence[Any], max_det: int) -> dict[str, np.ndarray]:
    """Per-image detections (objects with ``boxes`` (M, 4), ``scores`` (M,), ``class_ids`` (M,))
    -> the padded response arrays of a batch (see the module docstring). Rows beyond ``max_det``
    are dropped (the post-processing already keeps at most ``max_det``)."""
    n = len(dets)
    boxes = np.zeros((n, max_det, 4), np.float32)
    scores = np.zeros((n, max_det), np.float32)
    class_ids = np.full((n, max_det), -1, np.int32)
    num = np.zeros((n, 1), np.int32)
    for i, d in enumerate(dets):
        m = min(int(d.scores.shape[0]), max_det)
        boxes[i, :m] = d.boxes[:m]
        scores[i, :m] = d.scores[:m]
        class_ids[i, :m] = d.class_ids[:m]
        num[i, 0] = m
    return {DET_BOXES: boxes, DET_SCORES: scores, DET_CLASS_IDS: class_ids, NUM_DETS: num}


_FIX = "is the server a detnet-trt `serve` or an `export-triton` repository of this version?"


class ProtocolError(DetnetError):
    """A response that does not follow the contract above (a missing tensor, a wrong shape, a
    ``num_dets`` outside ``0..max_det``): raised rather than read as fewer or made-up detections."""


def _check_response(outputs: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """``(batch, max_det)`` of a response, after checking every tensor's presence and shape."""
    missing = [n for n in OUTPUTS if n not in outputs]
    if missing:
        raise ProtocolError(f"response has no {', '.join(missing)} (got {sorted(outputs)})", _FIX)
    shapes = {n: tuple(np.shape(outputs[n])) for n in OUTPUTS}
    boxes = shapes[DET_BOXES]
    if len(boxes) != 3 or boxes[2] != 4:
        raise ProtocolError(f"response {DET_BOXES} has shape {boxes}, expected [batch, max_det, 4]", _FIX)
    n, max_det = boxes[0], boxes[1]
    want = {DET_SCORES: (n, max_det), DET_CLASS_IDS: (n, max_det), NUM_DETS: (n, 1)}
    for name, shape in want.items():
        if shapes[name] != shape and not (name == NUM_DETS and shapes[name] == (n,)):
            raise ProtocolError(f"response {name} has shape {shapes[name]}, expected {list(shape)}", _FIX)
    return n, max_det


def unpack_detections(outputs: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Inverse of :func:`pack_detections`: ``[(boxes (M, 4), scores (M,), class_ids (M,)), ...]``.

    Raises :class:`ProtocolError` for a response that does not follow the contract: a missing
    tensor, shapes that disagree, or a ``num_dets`` below 0 or above the padded ``max_det`` rows.
    """
    n, max_det = _check_response(outputs)
    num = np.asarray(outputs[NUM_DETS]).reshape(-1)
    out = []
    for i, m in enumerate(num.tolist()):
        if not 0 <= int(m) <= max_det:
            raise ProtocolError(f"response {NUM_DETS}[{i}] is {m}, outside 0..{max_det} (the padded rows)", _FIX)
        m = int(m)
        out.append(
            (
                np.asarray(outputs[DET_BOXES][i, :m], np.float32),
                np.asarray(outputs[DET_SCORES][i, :m], np.float32),
                np.asarray(outputs[DET_CLASS_IDS][i, :m], np.int32),
            )
        )
    return out
