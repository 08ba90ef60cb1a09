"""Greedy NMS with the semantics of ONNX ``NonMaxSuppression``, and its export.

:func:`nms_kept_scores` runs in PyTorch and exports (TorchScript exporter, through the
``symbolic`` of :class:`_KeptScores`) as the same sub-graph the package's in-graph NMS appends to
the dense detector (:mod:`detnet_trt.export.nms`): one ``NonMaxSuppression`` over a single
class, its ``[S, 3]`` selection scattered into an ``N x B`` score map that is ``-1`` where a box
was not kept. The map's shape does not depend on data, so a constant-K TopK after it pads the
result to a fixed size.

Semantics (ONNX Runtime's, checked by the tests): per image, boxes are visited in descending
score; a box whose score is not above ``conf`` is dropped; a visited box is kept unless its IoU
with a kept box is above ``iou``; at most ``max_out`` are kept. Boxes are ``(x1, y1, x2, y2)``;
IoU has no ``+1``: to get the DetNet_pytorch ``+1`` IoU, pass ``(x1, y1, x2 + 1, y2 + 1)``.
"""

from __future__ import annotations

from typing import Any

import torch


def _iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of one box with each of ``others`` (``B x 4``); 0 where either area is not positive."""
    iw = (torch.minimum(box[2], others[:, 2]) - torch.maximum(box[0], others[:, 0])).clamp(min=0)
    ih = (torch.minimum(box[3], others[:, 3]) - torch.maximum(box[1], others[:, 1])).clamp(min=0)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    ok = (area > 0) & (areas > 0) & (union > 0)
    return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)), torch.zeros_like(union))


def _greedy(boxes: torch.Tensor, scores: torch.Tensor, max_out: int, iou: float, conf: float | None) -> torch.Tensor:
    """Indices kept in one image (``B x 4``, ``B``), in descending score."""
    cand = torch.arange(scores.shape[0]) if conf is None else torch.nonzero(scores > conf).flatten()
    order = cand[torch.argsort(scores[cand], descending=True, stable=True)]
    b = boxes[order]
    alive = torch.ones(order.shape[0], dtype=torch.bool)
    kept: list[int] = []
    i = 0
    n = int(order.shape[0])
    while i < n and len(kept) < max_out:
        if bool(alive[i]):
            kept.append(i)
            if i + 1 < n:
                alive[i + 1 :] &= _iou(b[i], b[i + 1 :]) <= iou
        i += 1
    return order[torch.tensor(kept, dtype=torch.long)]


class _KeptScores(torch.autograd.Function):
    """``N x B`` map: the score of each kept box, -1 elsewhere (see the module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, max_out: int, iou: float, conf: float | None
    ) -> torch.Tensor:
        out = torch.full_like(scores, -1.0)
        for n in range(scores.shape[0]):
            keep = _greedy(boxes[n].float(), scores[n].float(), max_out, iou, conf)
            out[n, keep] = scores[n, keep]
        return out

    @staticmethod
    def symbolic(  # 6 parameters: the graph, the two tensors and the three NMS settings
        g: Any, boxes: Any, scores: Any, max_out: int, iou: float, conf: float | None
    ) -> Any:
        scores3 = g.op("Unsqueeze", scores, g.op("Constant", value_t=torch.tensor([1], dtype=torch.long)))
        inputs = [
            boxes,
            scores3,
            g.op("Constant", value_t=torch.tensor([max_out], dtype=torch.long)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
        ]
        if conf is not None:
            inputs.append(g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32)))
        selected = g.op("NonMaxSuppression", *inputs)
        cols = g.op("Constant", value_t=torch.tensor([0, 2], dtype=torch.long))
        batch_box = g.op("Gather", selected, cols, axis_i=1)  # S x 2 (image, box)
        kept = g.op("GatherND", scores, batch_box)
        minus_one = g.op("ConstantOfShape", g.op("Shape", scores), value_t=torch.tensor([-1.0], dtype=torch.float32))
        return g.op("ScatterND", minus_one, batch_box, kept)


def nms_kept_scores(
    boxes: torch.Tensor, scores: torch.Tensor, max_out: int, iou: float, conf: float | None = None
) -> torch.Tensor:
    """Greedy NMS per image on ``boxes`` (``N x B x 4``) and ``scores`` (``N x B``, >= 0).

    Returns ``N x B`` float: the score of every kept box, ``-1`` for the others. ``conf=None``:
    no score threshold.
    """
    out: torch.Tensor = _KeptScores.apply(boxes, scores, int(max_out), float(iou), conf)
    return out


def select_kept(kept: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best kept entries of a :func:`nms_kept_scores` map: ``(scores, indices, valid)``,
    each ``N x k``, descending; ``valid`` is False (and the score 0) past the kept ones."""
    values, indices = kept.topk(min(k, kept.shape[1]), dim=1)
    if values.shape[1] < k:  # fewer boxes than asked for: pad with not-kept rows
        values = torch.nn.functional.pad(values, (0, k - values.shape[1]), value=-1.0)
        indices = torch.nn.functional.pad(indices, (0, k - indices.shape[1]), value=0)
    valid = values > -0.5
    return values * valid.to(values.dtype), indices, valid
