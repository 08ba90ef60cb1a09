"""DetNetDetector: the forward contract (uint8 in; losses or top-K out), training signal."""

from __future__ import annotations

import pytest
import torch

from detnet_trt.core.errors import InputError
from detnet_trt.core.meta import IMAGENET_MEAN, IMAGENET_STD
from detnet_trt.models import DetNetDetector, build_model

SIZE = (64, 96)


@pytest.fixture(scope="module")
def model() -> DetNetDetector:
    torch.manual_seed(0)
    m = build_model("detnet_tiny", num_classes=3, class_names=["a", "b", "c"], input_size=SIZE, topk=50)
    with torch.no_grad():  # break the ties of a fresh init so that orders are meaningful
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *SIZE), dtype=torch.uint8, generator=g)


def test_levels(model: DetNetDetector) -> None:
    shapes = model.fpn.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "p3": (48, 8), "p4": (48, 16), "p5": (48, 16), "p6": (48, 16)
    }
    big = build_model("detnet59", num_classes=2, input_size=(64, 64))
    assert {k: (s.channels, s.stride) for k, s in big.fpn.output_shape().items()} == {
        "p3": (256, 8), "p4": (256, 16), "p5": (256, 16), "p6": (256, 16)
    }
    assert [s.channels for s in big.backbone.output_shape().values()] == [512, 1024, 1024, 1024]


def test_eval_contract(model: DetNetDetector) -> None:
    with torch.no_grad():
        boxes, scores, class_ids = model(_images())
    assert boxes.shape == (2, 50, 4) and boxes.dtype == torch.float32
    assert scores.shape == (2, 50) and scores.dtype == torch.float32
    assert class_ids.shape == (2, 50) and class_ids.dtype == torch.int32
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    assert torch.all((scores >= 0) & (scores <= 1))
    assert int(class_ids.min()) >= 0 and int(class_ids.max()) <= 2
    assert torch.all(boxes[..., 2] >= boxes[..., 0]) and torch.all(boxes[..., 3] >= boxes[..., 1])


def test_topk_attribute_and_clamp(model: DetNetDetector) -> None:
    locations = 8 * 12 + 3 * 4 * 6
    try:
        model.topk = 10**6
        with torch.no_grad():
            _, scores, _ = model(_images(1))
        assert scores.shape == (1, locations * 3)
    finally:
        model.topk = 50


def test_nhwc_and_bgr(model: DetNetDetector) -> None:
    x = _images()
    with torch.no_grad():
        ref = model(x)
        norm = model.normalize(x)
        model.layout = "nhwc"
        try:
            got = model(x.permute(0, 2, 3, 1).contiguous())
        finally:
            model.layout = "nchw"
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    # channel 0 of the network input is R = channel 2 of the BGR image
    r = (x[:, 2].float() - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(norm[:, 0], r)


def test_meta(model: DetNetDetector) -> None:
    meta = model.meta()
    assert meta.model == "detnet_tiny" and meta.class_names == ["a", "b", "c"]
    assert meta.input_size == SIZE and meta.topk == 50 and meta.layout == "nchw"


def test_bad_input(model: DetNetDetector) -> None:
    with pytest.raises(InputError, match="3 channels"):
        model(torch.zeros(1, 4, *SIZE, dtype=torch.uint8))


def test_train_step_losses_and_grads() -> None:
    torch.manual_seed(0)
    m = build_model("detnet_tiny", num_classes=3, input_size=SIZE).train()
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [50.0, 10.0, 90.0, 60.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = m(_images(), targets)
    assert set(losses) == {"loss", "loss_cls", "loss_box", "loss_ctr"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["loss_box"].detach()) > 0
    losses["loss"].backward()
    stem = m.backbone.conv1.weight.grad
    assert stem is not None and float(stem.abs().sum()) > 0
    # a batch without any box still trains (background only)
    m.zero_grad()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = m(_images(), empty)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and float(losses["loss_box"].detach()) == 0.0


def test_training_reduces_loss() -> None:
    torch.manual_seed(0)
    m = build_model("detnet_tiny", num_classes=2, input_size=(32, 32)).train()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 28.0, 24.0]]), "labels": torch.tensor([1])}] * 2
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    first = last = 0.0
    for step in range(5):
        loss = m(x, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if step == 0 else first
        last = float(loss.detach())
    assert last < first


def test_bad_targets() -> None:
    m = build_model("detnet_tiny", num_classes=2, input_size=(32, 32)).train()
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(InputError, match="labels must be in 0..1"):
        m(x[:1], [{"boxes": torch.tensor([[0.0, 0, 8, 8]]), "labels": torch.tensor([5])}])
    with pytest.raises(InputError, match="targets for a batch"):
        m(x, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
