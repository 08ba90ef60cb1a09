"""Pyramid RoIAlign: DetNet_pytorch's CUDA kernel, reproduced through ONNX ``RoiAlign``.

Their kernel (``lib/model/roi_align/src/roi_align_kernel.cu``, used as ``RoIAlignAvg``) samples
each RoI of level ``l`` at ``(P + 1) x (P + 1)`` single points, ``h_i = y1 * s + i * b_h`` with
``s = H_l / H_input``, ``b_h = (y2 * s - y1 * s + 1) / P`` (``i = 0 .. P``, same for x),
bilinearly, where a point outside ``[0, H_l)`` x ``[0, W_l)`` is 0 and a point in the last row
or column (``[H_l - 1, H_l)``) *extrapolates* from the last two; then a 2 x 2 average pool with
stride 1 gives ``P x P``. ONNX ``RoiAlign`` (``output_half_pixel``, ``avg``,
``sampling_ratio=1``) samples bin centres and clamps at the border instead, so
:func:`pyramid_roi_align` feeds it what makes the two equal:

- each level gets one extra row and column holding the linear extrapolation
  ``2 f[H - 1] - f[H - 2]``, so that interpolating into them is their extrapolation;
- the levels are laid side by side in one mosaic (one ``RoiAlign`` for all RoIs, each on its
  own level), and each RoI becomes ``[x1 s - b_w / 2 + offset_l, ..., + (P + 1) b_w]``, whose
  ``P + 1`` bin centres are exactly their sample points;
- samples that their kernel zeroes (outside the level) are multiplied by a 0/1 mask computed
  from the same formula; then the same 2 x 2 average pool.

The result equals their kernel up to float rounding (the mosaic offset adds at most a few ulp
of the mosaic width to a sample position).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _axis(c: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """One axis of ONNX Runtime's RoiAlign sample: the low / high neighbour indices of the sample
    coordinates ``c`` on an axis of ``size`` and their two weights (zero outside ``[-1, size]``)."""
    empty = (c < -1.0) | (c > size)
    c = c.clamp(min=0)
    low = torch.floor(c).long()
    edge = low >= size - 1
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    c = torch.where(edge, low.to(c.dtype), c)
    frac = c - low.to(c.dtype)
    return low, high, [(1 - frac) * ~empty, frac * ~empty]


def _bilinear_onnx(feat_t: torch.Tensor, hw: tuple[int, int], b: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ONNX Runtime's RoiAlign sample: ``feat_t`` is ``(B * H * W, C)``; ``y`` ``(R, oh)``, ``x``
    ``(R, ow)``, ``b`` ``(R,)``; returns ``(R, C, oh, ow)``."""
    height, width = hw
    y_low, y_high, wy = _axis(y, height)
    x_low, x_high, wx = _axis(x, width)
    base = (b * height * width)[:, None, None]
    out = None
    for yi, wyi in ((y_low, wy[0]), (y_high, wy[1])):
        for xi, wxi in ((x_low, wx[0]), (x_high, wx[1])):
            v = feat_t[base + yi[:, :, None] * width + xi[:, None, :]]  # R x oh x ow x C
            term = v * (wyi[:, :, None] * wxi[:, None, :])[..., None]
            out = term if out is None else out + term
    assert out is not None
    return out.permute(0, 3, 1, 2)


class _RoiAlign(torch.autograd.Function):
    """ONNX ``RoiAlign`` with ``mode="avg"``, ``coordinate_transformation_mode="output_half_pixel"``,
    ``sampling_ratio=1``, ``spatial_scale=1``: PyTorch forward, ``RoiAlign`` on export."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, feat: torch.Tensor, rois: torch.Tensor, batch: torch.Tensor, out_h: int, out_w: int
    ) -> torch.Tensor:
        n, c, h, w = feat.shape
        x1, y1, x2, y2 = rois.unbind(1)
        bin_w = torch.clamp(x2 - x1, min=1.0) / out_w
        bin_h = torch.clamp(y2 - y1, min=1.0) / out_h
        pw = torch.arange(out_w, dtype=rois.dtype)
        ph = torch.arange(out_h, dtype=rois.dtype)
        xs = x1[:, None] + pw[None, :] * bin_w[:, None] + 0.5 * bin_w[:, None]
        ys = y1[:, None] + ph[None, :] * bin_h[:, None] + 0.5 * bin_h[:, None]
        feat_t = feat.permute(0, 2, 3, 1).reshape(n * h * w, c)
        if rois.shape[0] == 0:
            return feat.new_zeros((0, c, out_h, out_w))
        return _bilinear_onnx(feat_t, (h, w), batch.long(), ys, xs)

    @staticmethod
    def symbolic(g: Any, feat: Any, rois: Any, batch: Any, out_h: int, out_w: int) -> Any:
        return g.op(
            "RoiAlign",
            feat,
            rois,
            batch,
            mode_s="avg",
            coordinate_transformation_mode_s="output_half_pixel",
            output_height_i=out_h,
            output_width_i=out_w,
            sampling_ratio_i=1,
            spatial_scale_f=1.0,
        )


def roi_align_onnx(feat: torch.Tensor, rois: torch.Tensor, batch: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """ONNX ``RoiAlign`` (see :class:`_RoiAlign`): ``feat`` ``B x C x H x W``, ``rois`` ``R x 4``
    in ``feat`` pixels, ``batch`` ``R`` int64 -> ``R x C x out_h x out_w``."""
    out: torch.Tensor = _RoiAlign.apply(feat, rois, batch, int(out_h), int(out_w))
    return out


def _extrapolated(f: torch.Tensor) -> torch.Tensor:
    """``f`` with one more row and column: ``2 * last - second to last``."""
    f = torch.cat([f, 2 * f[:, :, -1:] - f[:, :, -2:-1]], dim=2)
    return torch.cat([f, 2 * f[:, :, :, -1:] - f[:, :, :, -2:-1]], dim=3)


def pyramid_roi_align(  # 5 parameters
    feats: list[torch.Tensor], rois: torch.Tensor, levels: torch.Tensor, input_height: int, pool: int
) -> torch.Tensor:
    """DetNet_pytorch's ``_PyramidRoI_Feat`` in ``align`` mode (see the module docstring).

    Args:
        feats: the pooled levels (P2 ... P5), each ``N x C x H_l x W_l`` with ``H_l, W_l >= 2``.
        rois: ``N x R x 4`` boxes in input pixels.
        levels: ``N x R`` int64, the level index of each RoI into ``feats``.
        input_height: the input's height (their spatial scale is ``H_l / input_height``).
        pool: output size ``P`` (their ``POOLING_SIZE``).

    Returns ``(N * R) x C x P x P``, image-major.
    """
    tiles = [_extrapolated(f) for f in feats]
    height = max(t.shape[2] for t in tiles)
    offsets, x = [], 0
    for t in tiles:
        offsets.append(float(x))
        x += t.shape[3]
    mosaic = torch.cat([F.pad(t, (0, 0, 0, height - t.shape[2])) for t in tiles], dim=3)
    scale = torch.tensor([f.shape[2] / input_height for f in feats], dtype=torch.float32)[levels]
    lv_h = torch.tensor([float(f.shape[2]) for f in feats])[levels]
    lv_w = torch.tensor([float(f.shape[3]) for f in feats])[levels]
    off = torch.tensor(offsets)[levels]
    x1, y1 = rois[..., 0] * scale, rois[..., 1] * scale
    x2, y2 = rois[..., 2] * scale, rois[..., 3] * scale
    bw = torch.clamp(x2 - x1 + 1.0, min=0.0) / pool
    bh = torch.clamp(y2 - y1 + 1.0, min=0.0) / pool
    steps = torch.arange(pool + 1, dtype=torch.float32)
    xs = steps * bw[..., None] + x1[..., None]  # N x R x (P + 1): their sample points
    ys = steps * bh[..., None] + y1[..., None]
    ok_x = (xs >= 0) & (xs < lv_w[..., None])
    ok_y = (ys >= 0) & (ys < lv_h[..., None])
    mask = (ok_y[..., :, None] & ok_x[..., None, :]).to(mosaic.dtype).reshape(-1, 1, pool + 1, pool + 1)
    start_x = x1 - 0.5 * bw + off
    start_y = y1 - 0.5 * bh
    boxes = torch.stack([start_x, start_y, start_x + (pool + 1) * bw, start_y + (pool + 1) * bh], dim=-1)
    # image index of each RoI, from the data (not from N), so that the exported batch stays dynamic
    batch = (torch.ones_like(rois[..., 0], dtype=torch.long).cumsum(0) - 1).reshape(-1)
    sampled = roi_align_onnx(mosaic, boxes.reshape(-1, 4), batch, pool + 1, pool + 1)
    return F.avg_pool2d(sampled * mask, kernel_size=2, stride=1)
