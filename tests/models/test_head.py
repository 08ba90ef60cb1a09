"""Head pieces: top-K against a plain reference, box decoding, losses, FCOS assignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detnet_trt.models.assign import centerness_targets, fcos_targets, level_ranges
from detnet_trt.models.head import decode_boxes, locations, topk_candidates
from detnet_trt.models.losses import giou_loss, sigmoid_focal_loss


def test_topk_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(2, 50, 4, generator=g) * 100
    scores = torch.rand(2, 50, 3, generator=g)
    b, s, c = topk_candidates(boxes, scores, 20)
    assert b.shape == (2, 20, 4) and s.shape == (2, 20) and c.dtype == torch.int32
    for n in range(2):
        flat = scores[n].numpy().reshape(-1)
        order = np.argsort(-flat, kind="stable")[:20]
        np.testing.assert_allclose(s[n].numpy(), flat[order])
        np.testing.assert_array_equal(c[n].numpy(), order % 3)
        np.testing.assert_allclose(b[n].numpy(), boxes[n].numpy()[order // 3])


def test_topk_clamped_to_candidates() -> None:
    b, s, c = topk_candidates(torch.zeros(1, 4, 4), torch.rand(1, 4, 2), 1000)
    assert s.shape == (1, 8)


def test_locations_and_decode() -> None:
    pts = locations(torch.zeros(1, 1, 2, 3), stride=8)
    assert pts.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    boxes = decode_boxes(pts[:1], torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]))
    assert boxes.tolist() == [[[3.0, 2.0, 7.0, 8.0]]]


def test_giou_loss_values() -> None:
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [20, 0, 30, 10]])
    loss = giou_loss(a, b)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-6)
    assert loss[1].item() == pytest.approx(0.5, abs=1e-6)  # IoU 1/2, enclosing = union
    assert loss[2].item() == pytest.approx(1 + (300 - 200) / 300, abs=1e-6)  # IoU 0, gap penalty


def test_focal_loss_reference() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5])
    target = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(logits)
    ref = -(0.25 * (1 - p[0]) ** 2 * torch.log(p[0])) - sum(0.75 * p[i] ** 2 * torch.log(1 - p[i]) for i in (1, 2))
    assert sigmoid_focal_loss(logits, target).item() == pytest.approx(ref.item(), rel=1e-5)


def test_fcos_assignment() -> None:
    pts = torch.tensor([[50.0, 50.0], [12.0, 12.0], [200.0, 200.0], [52.0, 52.0]])
    ranges = torch.tensor([[0.0, 64.0]] * 3 + [[64.0, float("inf")]])
    radii = torch.full((4,), 12.0)
    boxes = torch.tensor([[0.0, 0, 100, 100], [40, 40, 60, 60]])
    labels = torch.tensor([1, 2])
    lab, matched = fcos_targets(pts, ranges, radii, boxes, labels)
    # point 0 is inside both: the smaller box wins; point 1 is outside both centre regions;
    # point 2 is in no box; point 3's level only takes max distance > 64
    assert lab.tolist() == [2, -1, -1, -1]
    assert matched[0].tolist() == [40, 40, 60, 60]
    empty_lab, _ = fcos_targets(pts, ranges, radii, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty_lab.tolist() == [-1] * 4
    assert level_ranges((64.0, 128.0)) == [(0.0, 64.0), (64.0, float("inf"))]
    ctr = centerness_targets(torch.tensor([[50.0, 50.0], [25.0, 50.0]]), boxes[:1].expand(2, 4))
    assert ctr.tolist() == pytest.approx([1.0, (25 / 75) ** 0.5])
