"""The two-stage DetNet-59 FPN against a re-statement of DetNet_pytorch's test-time forward.

The reference below is written for this test from that implementation's code (``fpn.py``,
``detnet_backbone.py``, ``rpn_fpn.py``, ``proposal_layer_fpn.py``, ``generate_anchors.py``,
``bbox_transform.py``, ``roi_align_kernel.cu``, ``nms_cuda_kernel.cu``, ``test_net.py``), in its
own terms: their state-dict keys, their per-level loop over RoIs, their CUDA kernel's sample
points with extrapolation in the last row / column, their ``+1`` IoU greedy NMS and
``test_net.py``'s per-class NMS and 100-per-image cut. Weights are random, in their exact key
layout (with real BN statistics and a class layer scaled up so that the class scores are peaked).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detnet_reference import reference_stages
from fpn_checkpoint import NUM_CLASSES, POST, SIZE, their_checkpoint

from detnet_trt.core.errors import InputError, ModelFileError
from detnet_trt.models import DetNetFPNDetector, StateDictMismatchError, load_detnet_pytorch_fpn
from detnet_trt.models.checkpoint import load_checkpoint, save_checkpoint

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

# --- the reference: their test-time forward, restated -----------------------------------------
def _conv(x, sd, p, **kw):
    return F.conv2d(x, sd[p + ".weight"], sd.get(p + ".bias"), **kw)


def _ref_anchors(scale, ratios, shape, stride):
    scales, ratios = np.meshgrid(np.array(scale), np.array(ratios))
    scales, ratios = scales.flatten(), ratios.flatten()
    heights, widths = scales / np.sqrt(ratios), scales * np.sqrt(ratios)
    shifts_y = np.arange(0, shape[0], 1) * stride
    shifts_x = np.arange(0, shape[1], 1) * stride
    shifts_x, shifts_y = np.meshgrid(shifts_x, shifts_y)
    box_widths, box_centers_x = np.meshgrid(widths, shifts_x)
    box_heights, box_centers_y = np.meshgrid(heights, shifts_y)
    centers = np.stack([box_centers_x, box_centers_y], axis=2).reshape([-1, 2])
    sizes = np.stack([box_widths, box_heights], axis=2).reshape([-1, 2])
    return np.concatenate([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=1)


def _ref_transform_inv(boxes, deltas):
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    dx, dy, dw, dh = deltas[:, 0::4], deltas[:, 1::4], deltas[:, 2::4], deltas[:, 3::4]
    pcx = dx * widths[:, None] + ctr_x[:, None]
    pcy = dy * heights[:, None] + ctr_y[:, None]
    pw = torch.exp(dw) * widths[:, None]
    ph = torch.exp(dh) * heights[:, None]
    out = deltas.clone()
    out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph
    return out


def _ref_clip(boxes, h, w):
    boxes[:, 0::4].clamp_(0, w - 1)
    boxes[:, 1::4].clamp_(0, h - 1)
    boxes[:, 2::4].clamp_(0, w - 1)
    boxes[:, 3::4].clamp_(0, h - 1)
    return boxes


def _ref_nms(dets, thresh):
    """nms_cuda_kernel.cu: greedy over the (score-sorted) rows, +1 IoU, suppress if IoU > thresh."""
    d = dets.double().numpy()
    keep, removed = [], np.zeros(len(d), bool)
    for i in range(len(d)):
        if removed[i]:
            continue
        keep.append(i)
        left, right = np.maximum(d[i, 0], d[:, 0]), np.minimum(d[i, 2], d[:, 2])
        top, bottom = np.maximum(d[i, 1], d[:, 1]), np.minimum(d[i, 3], d[:, 3])
        inter = np.maximum(right - left + 1, 0) * np.maximum(bottom - top + 1, 0)
        sa = (d[i, 2] - d[i, 0] + 1) * (d[i, 3] - d[i, 1] + 1)
        sb = (d[:, 2] - d[:, 0] + 1) * (d[:, 3] - d[:, 1] + 1)
        removed |= inter / (sa + sb - inter) > thresh
        removed[: i + 1] = removed[: i + 1]  # earlier rows are settled
    return torch.tensor(keep, dtype=torch.long)


def _ref_roi_align(feat, rois, scale, aligned):
    """roi_align_kernel.cu ROIAlignForward for one level (aligned = POOLING_SIZE + 1), in double."""
    f = feat.double().numpy()[0]
    c, height, width = f.shape
    out = np.zeros((len(rois), c, aligned, aligned))
    for n, roi in enumerate(rois.double().numpy()):
        sw, sh, ew, eh = (np.float32(v) * np.float32(scale) for v in roi[1:])
        rw, rh = max(ew - sw + 1.0, 0.0), max(eh - sh + 1.0, 0.0)
        bh, bw = np.float32(rh / (aligned - 1.0)), np.float32(rw / (aligned - 1.0))
        for ph in range(aligned):
            h = np.float32(ph) * bh + sh
            hs = int(min(np.floor(h), height - 2))
            for pw in range(aligned):
                w = np.float32(pw) * bw + sw
                ws = int(min(np.floor(w), width - 2))
                if h < 0 or h >= height or w < 0 or w >= width:
                    continue
                hr, wr = float(h) - hs, float(w) - ws
                out[n, :, ph, pw] = (f[:, hs, ws] * (1 - hr) * (1 - wr) + f[:, hs, ws + 1] * (1 - hr) * wr
                                     + f[:, hs + 1, ws] * hr * (1 - wr) + f[:, hs + 1, ws + 1] * hr * wr)
    return F.avg_pool2d(torch.from_numpy(out).float(), kernel_size=2, stride=1)


def _ref_detect(sd, image, pool, post=POST):
    """Their fpn.forward (eval) + test_net.py for one uint8 BGR image (3 x H x W)."""
    im_h, im_w = image.shape[1:]
    x = image.numpy()[::-1].transpose(1, 2, 0).astype(np.float32) / 255.0  # RGB, as scipy.misc.imread
    x = torch.from_numpy(((x - MEAN) / STD).transpose(2, 0, 1).copy())[None]
    c2, c3, c4, c5, c6 = reference_stages(sd, x, "RCNN_layer0.0.weight", "RCNN_layer0.1", "RCNN_layer{layer}.0.{j}")
    p6 = _conv(c6, sd, "RCNN_toplayer")
    p5 = _conv(c5, sd, "RCNN_latlayer1") + p6
    p4 = _conv(c4, sd, "RCNN_latlayer2") + p5
    p3 = F.interpolate(p4, size=c3.shape[2:], mode="bilinear", align_corners=True) + _conv(c3, sd, "RCNN_latlayer3")
    p3 = _conv(p3, sd, "RCNN_smooth1", padding=1)
    p2 = F.interpolate(p3, size=c2.shape[2:], mode="bilinear", align_corners=True) + _conv(c2, sd, "RCNN_latlayer4")
    p2 = _conv(p2, sd, "RCNN_smooth2", padding=1)
    probs, deltas, shapes = [], [], []
    for f in (p2, p3, p4, p5, p6):
        r = F.relu(_conv(f, sd, "RCNN_rpn.RPN_Conv", padding=1))
        score = _conv(r, sd, "RCNN_rpn.RPN_cls_score")
        s = score.shape
        prob = F.softmax(score.view(s[0], 2, s[1] * s[2] // 2, s[3]), dim=1).view(s)
        shapes.append((s[2], s[3]))
        probs.append(prob.permute(0, 2, 3, 1).contiguous().view(1, -1, 2))
        deltas.append(_conv(r, sd, "RCNN_rpn.RPN_bbox_pred").permute(0, 2, 3, 1).contiguous().view(1, -1, 4))
    scores = torch.cat(probs, 1)[0, :, 1]
    anchors = np.concatenate([_ref_anchors(sz, [0.5, 1, 2], sh, st) for sz, sh, st in
                              zip([32, 64, 128, 256, 512], shapes, [4, 8, 16, 16, 16])])
    proposals = _ref_clip(_ref_transform_inv(torch.from_numpy(anchors).float(), torch.cat(deltas, 1)[0]), im_h, im_w)
    order = torch.sort(scores, 0, True)[1][:6000]
    props, sc = proposals[order], scores[order]
    keep = _ref_nms(torch.cat([props, sc[:, None]], 1), 0.7)[:post]
    rois = torch.zeros(post, 5)
    rois[: len(keep), 1:] = props[keep]
    # _PyramidRoI_Feat, align mode
    h, w = rois[:, 4] - rois[:, 2] + 1, rois[:, 3] - rois[:, 1] + 1
    level = torch.floor(torch.log(torch.sqrt(h * w) / 224.0) / np.log(2) + 4).clamp(2, 5)
    feats, where = [], []
    for i, lv in enumerate(range(2, 6)):
        idx = torch.nonzero(level == lv).flatten()
        if len(idx):
            fm = (p2, p3, p4, p5)[i]
            feats.append(_ref_roi_align(fm, rois[idx], fm.shape[2] / im_h, pool + 1))
            where.append(idx)
    pooled = torch.cat(feats)[torch.sort(torch.cat(where))[1]]
    top = F.relu(_conv(F.relu(_conv(pooled, sd, "RCNN_top.0", stride=pool)), sd, "RCNN_top.2"))
    fc7 = top.mean(3).mean(2)
    cls_prob = F.softmax(F.linear(fc7, sd["RCNN_cls_score.weight"], sd["RCNN_cls_score.bias"]), dim=1)
    box_deltas = F.linear(fc7, sd["RCNN_bbox_pred.weight"], sd["RCNN_bbox_pred.bias"])
    box_deltas = (box_deltas.view(-1, 4) * torch.tensor([0.1, 0.1, 0.2, 0.2])).view(post, -1)
    pred = _ref_clip(_ref_transform_inv(rois[:, 1:], box_deltas), im_h, im_w)
    dets = []
    for j in range(1, cls_prob.shape[1]):
        inds = torch.nonzero(cls_prob[:, j] > 0.0).view(-1)
        cs = cls_prob[inds, j]
        o = torch.sort(cs, 0, True)[1]
        cd = torch.cat([pred[inds][:, j * 4:(j + 1) * 4], cs[:, None]], 1)[o]
        cd = cd[_ref_nms(cd, 0.3)]
        dets += [(j - 1, row) for row in cd]
    thresh = np.sort([float(r[4]) for _, r in dets])[-100] if len(dets) > 100 else -1.0
    return rois[:, 1:], [(c, r) for c, r in dets if float(r[4]) >= thresh]


@pytest.fixture(scope="module")
def ckpt() -> dict:
    return their_checkpoint()


@pytest.fixture(scope="module")
def model(ckpt) -> DetNetFPNDetector:
    return load_detnet_pytorch_fpn(ckpt, NUM_CLASSES, input_size=SIZE, topk=POST)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (2, 3, *SIZE), dtype=torch.uint8, generator=g)


def test_same_detections_as_their_test_forward(ckpt, model, images) -> None:
    sd = ckpt["model"]
    with torch.no_grad():
        boxes, scores, cls, num = model(images)
        feats = model.features(images)
        rois = model.proposals(feats, *SIZE)
    assert boxes.shape == (2, 100, 4) and cls.dtype == torch.int32 and num.dtype == torch.int32
    for i in range(images.shape[0]):
        with torch.no_grad():
            ref_rois, ref = _ref_detect(sd, images[i], model.config.pool_size)
        torch.testing.assert_close(rois[i], ref_rois, atol=0.01, rtol=0)
        n = int(num[i])
        assert n == len(ref) > 10
        ref.sort(key=lambda cr: -float(cr[1][4]))
        ref_scores = torch.stack([r[4] for _, r in ref])
        torch.testing.assert_close(scores[i, :n], ref_scores, atol=1e-4, rtol=0)
        assert cls[i, :n].tolist() == [c for c, _ in ref]
        torch.testing.assert_close(boxes[i, :n], torch.stack([r[:4] for _, r in ref]), atol=0.01, rtol=0)
        assert not boxes[i, n:].any() and not scores[i, n:].any()


def test_roi_align_reproduces_their_kernel_at_the_borders() -> None:
    """RoIs touching the right / bottom edge sample the extrapolated last row and points past it."""
    from detnet_trt.models.two_stage.roi_align import pyramid_roi_align

    torch.manual_seed(1)
    feats = [torch.randn(1, 3, 16 // s, 24 // s) for s in (1, 2, 4, 4)]
    rois = torch.tensor([[[0.0, 0.0, 63.0, 95.0], [40.0, 50.0, 95.0, 63.0], [3.2, 7.9, 11.5, 20.1], [90.0, 60.0, 95.0, 63.0]]])
    rois = rois[..., [0, 1, 2, 3]]
    rois[..., 2] = rois[..., 2].clamp(max=95)
    rois[..., 3] = rois[..., 3].clamp(max=63)
    for lv in range(4):
        levels = torch.full((1, 4), lv)
        got = pyramid_roi_align(feats, rois, levels, 64, 7)
        scale = feats[lv].shape[2] / 64
        ref = _ref_roi_align(feats[lv], torch.cat([torch.zeros(4, 1), rois[0]], 1), scale, 8)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_and_other_input_size(tmp_path, model, images) -> None:
    path = save_checkpoint(model, tmp_path / "fpn.pt")
    loaded, ckpt = load_checkpoint(path)
    assert isinstance(loaded, DetNetFPNDetector) and ckpt["model"] == "detnet59_fpn"
    assert loaded.meta().nms == "onnx" and loaded.meta().input_size == SIZE
    with torch.no_grad():
        a, b = model(images[:1]), loaded(images[:1])
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y)
        out = loaded(torch.zeros(1, 3, 96, 64, dtype=torch.uint8))  # another size than configured works
    assert out[0].shape == (1, 100, 4)
    with pytest.raises(InputError, match="multiples of 16"):
        loaded(torch.zeros(1, 3, 72, 64, dtype=torch.uint8))


def test_import_errors_name_the_problem(ckpt) -> None:
    with pytest.raises(ModelFileError, match="has 6 classes .background included., not 21"):
        load_detnet_pytorch_fpn(ckpt, 21)
    with pytest.raises(ModelFileError, match="pooling_mode 'crop'"):
        load_detnet_pytorch_fpn({**ckpt, "pooling_mode": "crop"}, NUM_CLASSES)
    with pytest.raises(ModelFileError, match="class_agnostic"):
        load_detnet_pytorch_fpn({**ckpt, "class_agnostic": True}, NUM_CLASSES)
    sd = dict(ckpt["model"])
    del sd["RCNN_rpn.RPN_Conv.weight"]
    sd["RCNN_smooth1.weight"] = torch.zeros(3, 3, 1, 1)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError) as err:
        load_detnet_pytorch_fpn({"model": sd}, NUM_CLASSES)
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 missing key(s): rpn.conv.weight" in msg and "extra.weight" in msg and "RCNN_smooth1.weight (expected" in msg
    with pytest.raises(ModelFileError, match="holds no state dict"):
        load_detnet_pytorch_fpn({"model": {}}, NUM_CLASSES)
