"""Their checkpoint: a two-stage DetNet-59 FPN checkpoint dict as DetNet_pytorch's trainval_net.py
saves it (their state-dict keys), with random weights (real BN statistics, output layers scaled to a
trained model's spread). Made by the model tests (tests/models/test_detnet_fpn.py, which restates
their test-time forward), the export tests and the import CLI tests."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from detnet_trt.models import DetNetFPNConfig, DetNetFPNDetector, load_detnet_pytorch_fpn

SIZE = (64, 96)  # H, W
NUM_CLASSES = 6  # with background
POST = 20  # proposals kept (theirs: 300); 20 x 5 candidates <= 100, so the 100-cut has no boundary

_OURS_TO_THEIRS = [
    (r"^backbone\.conv1\.", "RCNN_layer0.0."),
    (r"^backbone\.bn1\.", "RCNN_layer0.1."),
    (r"^neck\.top\.", "RCNN_toplayer."),
    (r"^neck\.lat5\.", "RCNN_latlayer1."),
    (r"^neck\.lat4\.", "RCNN_latlayer2."),
    (r"^neck\.lat3\.", "RCNN_latlayer3."),
    (r"^neck\.lat2\.", "RCNN_latlayer4."),
    (r"^neck\.smooth3\.", "RCNN_smooth1."),
    (r"^neck\.smooth2\.", "RCNN_smooth2."),
    (r"^rpn\.conv\.", "RCNN_rpn.RPN_Conv."),
    (r"^rpn\.cls\.", "RCNN_rpn.RPN_cls_score."),
    (r"^rpn\.box\.", "RCNN_rpn.RPN_bbox_pred."),
    (r"^roi_head\.fc6\.", "RCNN_top.0."),
    (r"^roi_head\.fc7\.", "RCNN_top.2."),
    (r"^roi_head\.cls\.", "RCNN_cls_score."),
    (r"^roi_head\.box\.", "RCNN_bbox_pred."),
]


def _theirs(key: str) -> str:
    m = re.match(r"backbone\.layer(\d)\.(\d+)\.(.*)", key)
    if m:
        rest = m.group(3)
        if rest.startswith("shortcut."):
            rest = ("downsample." if int(m.group(1)) <= 3 else "extra_conv.") + rest[len("shortcut."):]
        return f"RCNN_layer{m.group(1)}.0.{m.group(2)}.{rest}"
    for pat, rep in _OURS_TO_THEIRS:
        if re.match(pat, key):
            return re.sub(pat, rep, key)
    raise AssertionError(key)


def _scale_heads(src: DetNetFPNDetector) -> None:
    """Rescale the output layers so that, on a random image, RPN logits / deltas and class
    logits / box deltas have the spread of a trained model (std 2, 0.3, 3, 0.3): scores spread
    over (0, 1) without saturating to ties at 1.0, boxes that stay boxes."""
    img = torch.randint(0, 256, (1, 3, *SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))
    feats = src.features(img)
    hidden = torch.cat([F.relu(src.rpn.conv(f)).flatten(2) for f in feats], 2)[..., None]
    for layer, target in ((src.rpn.cls, 0.7), (src.rpn.box, 0.15)):
        layer.weight.mul_(target / float(layer(hidden).std()))
        layer.bias.zero_()
    from detnet_trt.models.two_stage.boxes import fpn_levels
    from detnet_trt.models.two_stage.roi_align import pyramid_roi_align

    rois = src.proposals(feats, *SIZE)
    pooled = pyramid_roi_align(feats[:4], rois, fpn_levels(rois), SIZE[0], src.config.pool_size)
    x = F.relu(src.roi_head.fc7(F.relu(src.roi_head.fc6(pooled)))).mean(3).mean(2)
    for layer, target in ((src.roi_head.cls, 3.0), (src.roi_head.box, 0.3)):
        layer.weight.mul_(target / float(layer(x).std()))
        layer.bias.zero_()


def their_checkpoint(seed: int = 0, pool: int = 7, num_classes: int = NUM_CLASSES) -> dict:
    """A checkpoint dict as their trainval_net.py saves it, with random weights."""
    torch.manual_seed(seed)
    src = DetNetFPNDetector(DetNetFPNConfig(num_classes=num_classes - 1, input_size=SIZE, pool_size=pool))
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            torch.nn.init.normal_(m.weight, 1.0, 0.1)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    src.backbone.train()
    with torch.no_grad():
        src.backbone(torch.randn(4, 3, *SIZE))
        src.eval()
        _scale_heads(src)
    model = {_theirs(k): v.clone() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    return {"session": 1, "epoch": 7, "model": model, "pooling_mode": "align", "class_agnostic": False}


def their_model() -> DetNetFPNDetector:
    """:func:`their_checkpoint` imported: ``SIZE`` input, ``POST`` proposals."""
    return load_detnet_pytorch_fpn(their_checkpoint(), NUM_CLASSES, input_size=SIZE, topk=POST)
