"""Import of DetNet_pytorch ``detnet59`` state dicts.

The state dict is made here in that implementation's key layout (``conv1``, ``bn1``,
``layer1``..``layer5`` with ``downsample`` / ``extra_conv`` shortcuts, ``fc``), and the logits are
compared with a plain functional re-statement of that implementation's forward (stride in the
3x3 conv of down-sampling blocks, dilation 2 in layers 4 and 5, projection shortcut in the
first block of every layer).
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from detnet_reference import reference_stages

from detnet_trt.core.errors import ModelFileError
from detnet_trt.models import DetNet59Config, DetNetClassifier, StateDictMismatchError, load_detnet_pytorch
from detnet_trt.models.pretrained import load_pretrained_backbone


def _public_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with real BN statistics, keyed as DetNet_pytorch saves them.

    BN statistics are measured on random images, so activations stay normalised and the logits
    depend on the input (and on every stride / dilation choice) instead of saturating.
    """
    torch.manual_seed(seed)
    src = DetNetClassifier(DetNet59Config())
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            torch.nn.init.normal_(m.weight, 1.0, 0.1)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    src.train()
    with torch.no_grad():
        src(torch.randn(4, 3, 96, 96))
    out = {}
    for k, v in src.state_dict().items():
        k = k.removeprefix("backbone.")
        m = re.match(r"layer(\d)\.(\d+)\.shortcut\.(.*)", k)
        if m:
            name = "downsample" if int(m.group(1)) <= 3 else "extra_conv"
            k = f"layer{m.group(1)}.{m.group(2)}.{name}.{m.group(3)}"
        if not k.endswith("num_batches_tracked"):  # old PyTorch checkpoints have none
            out[k] = v.clone()
    return out


def _reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = reference_stages(sd, x, "conv1.weight", "bn1", "layer{layer}.{j}")[-1]
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


@pytest.fixture(scope="module")
def public_sd() -> dict[str, torch.Tensor]:
    return _public_state_dict()


def test_logits_equal_reference(public_sd: dict[str, torch.Tensor]) -> None:
    model = load_detnet_pytorch(public_sd)
    assert isinstance(model, DetNetClassifier) and not model.training
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got = model(x)
        ref = _reference_forward(public_sd, x)
    assert got.shape == (1, 1000)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4), (got - ref).abs().max()
    # the comparison is sharp enough to see the stride placement: "1x1" gives other logits
    other = DetNetClassifier(DetNet59Config(stride_in="1x1")).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (other(x) - ref).abs().max() > 1e-2


def test_round_trip_keys(public_sd: dict[str, torch.Tensor]) -> None:
    model = load_detnet_pytorch(public_sd)
    own = model.state_dict()
    assert torch.equal(own["backbone.layer4.0.shortcut.0.weight"], public_sd["layer4.0.extra_conv.0.weight"])
    assert torch.equal(own["backbone.layer2.0.shortcut.1.running_var"], public_sd["layer2.0.downsample.1.running_var"])
    assert torch.equal(own["fc.bias"], public_sd["fc.bias"])


def test_module_prefix_accepted(public_sd: dict[str, torch.Tensor]) -> None:
    wrapped = {"state_dict": {"module." + k: v for k, v in public_sd.items()}}
    model = load_detnet_pytorch(wrapped)  # type: ignore[arg-type]
    assert torch.equal(model.state_dict()["backbone.conv1.weight"], public_sd["conv1.weight"])


def test_key_mismatch_lists_keys(public_sd: dict[str, torch.Tensor]) -> None:
    bad = dict(public_sd)
    del bad["layer3.5.bn2.running_mean"]
    bad["layer6.0.conv1.weight"] = torch.zeros(1)
    bad["layer5.1.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    with pytest.raises(StateDictMismatchError) as info:
        load_detnet_pytorch(bad)
    msg = str(info.value)
    assert "1 missing key(s): backbone.layer3.5.bn2.running_mean" in msg
    assert "1 unexpected key(s): backbone.layer6.0.conv1.weight" in msg
    assert "backbone.layer5.1.conv2.weight (expected (256, 256, 3, 3), got (256, 256, 1, 1))" in msg
    assert isinstance(info.value, ModelFileError)


def test_not_a_state_dict() -> None:
    with pytest.raises(ModelFileError, match="not a state dict"):
        load_detnet_pytorch({"conv1.weight": [1, 2, 3]})  # type: ignore[dict-item]


def test_pretrained_backbone_in_detector(tmp_path, public_sd: dict[str, torch.Tensor]) -> None:  # type: ignore[no-untyped-def]
    from detnet_trt.models import build_model

    path = tmp_path / "detnet59.pth"
    torch.save(public_sd, path)
    model = build_model("detnet59", num_classes=2, input_size=(64, 64), pretrained_backbone=path)
    assert torch.equal(model.backbone.layer5[2].conv3.weight, public_sd["layer5.2.conv3.weight"])
    with pytest.raises(ModelFileError, match="no such file"):
        load_pretrained_backbone(model.backbone, tmp_path / "missing.pth")
    with pytest.raises(StateDictMismatchError, match="mis-shaped"):
        build_model("detnet_tiny", num_classes=2, pretrained_backbone=path)
