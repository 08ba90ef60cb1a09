"""Host pre-processing: letterbox a frame into the model's uint8 input buffer.

The exported graph does the cast to float and the mean/std normalisation itself, so the host only
resizes (keeping the aspect ratio), pads, and (for ``nchw`` engines) transposes, all in uint8 and
into a buffer that is allocated once and reused for every frame. The same function feeds the
runtime, INT8 calibration, evaluation and training-time validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..core.errors import InputError
from ..core.limits import BATCH

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxInfo:
    """How a frame was mapped into the input: ``input = frame * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: int
    pad_y: int
    orig_h: int
    orig_w: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(M, 4)`` xyxy boxes from input pixels back to the frame, clipped to it."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale
        np.clip(out[:, 0::2], 0, self.orig_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.orig_h, out=out[:, 1::2])
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(M, 4)`` xyxy boxes from frame pixels into input pixels."""
        out = np.asarray(boxes, dtype=np.float32) * self.scale
        out[:, 0::2] += self.pad_x
        out[:, 1::2] += self.pad_y
        return out


def letterbox_geometry(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> LetterboxInfo:
    """Scale and padding that fit a ``frame_hw`` frame centred into ``input_hw``."""
    fh, fw = frame_hw
    ih, iw = input_hw
    scale = min(ih / fh, iw / fw)
    nh, nw = max(1, round(fh * scale)), max(1, round(fw * scale))
    return LetterboxInfo(scale, (iw - nw) // 2, (ih - nh) // 2, fh, fw)


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"expected an H x W x 3 uint8 image, got {got}", "decode images with cv2.imread")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"empty image of shape {frame.shape}")


def letterbox_into(
    frame: np.ndarray,
    out: np.ndarray,
    layout: str = "nhwc",
    pad_value: int = PAD_VALUE,
    scratch: np.ndarray | None = None,
) -> LetterboxInfo:
    """Letterbox one ``H x W x 3`` uint8 ``frame`` into ``out`` (one image of the input buffer).

    ``out`` is ``(h, w, 3)`` for ``nhwc`` or ``(3, h, w)`` for ``nchw``, uint8, and is fully
    overwritten (image plus padding). Channel order is kept (BGR in, BGR out: the graph swaps).
    Resizing is bilinear (``cv2.INTER_LINEAR``) both ways: ``INTER_AREA``, the usual choice for
    shrinking, takes several times longer than the whole letterbox at non-integer scales
    (benchmarks/bench_letterbox.py); training and deployment use this same function.
    Allocates nothing for ``nhwc``; for ``nchw`` the resize goes through ``scratch`` (an
    ``(h, w, 3)`` uint8 buffer, as :class:`Letterboxer` keeps one) or, without it, a temporary,
    and is then split into the three channel planes of ``out``.
    """
    _check_frame(frame)
    if layout == "nhwc":
        ih, iw = out.shape[0], out.shape[1]
    elif layout == "nchw":
        ih, iw = out.shape[1], out.shape[2]
    else:
        raise InputError(f"unknown layout {layout!r}", "use 'nchw' or 'nhwc'")
    info = letterbox_geometry((frame.shape[0], frame.shape[1]), (ih, iw))
    nh = min(ih, max(1, round(info.orig_h * info.scale)))
    nw = min(iw, max(1, round(info.orig_w * info.scale)))
    y0, x0 = info.pad_y, info.pad_x
    interp = cv2.INTER_LINEAR
    if layout == "nhwc":
        region = out[y0 : y0 + nh, x0 : x0 + nw]
        if (nh, nw) == frame.shape[:2]:
            region[...] = frame
        else:
            resized = cv2.resize(frame, (nw, nh), dst=region, interpolation=interp)
            if resized is not None and not np.shares_memory(resized, out):
                region[...] = resized
        out[:y0] = pad_value
        out[y0 + nh :] = pad_value
        out[y0 : y0 + nh, :x0] = pad_value
        out[y0 : y0 + nh, x0 + nw :] = pad_value
    else:
        if (nh, nw) == frame.shape[:2]:
            resized = frame
        elif scratch is not None:
            resized = scratch[:nh, :nw]
            got = cv2.resize(frame, (nw, nh), dst=resized, interpolation=interp)
            if got is not None and not np.shares_memory(got, scratch):
                resized[...] = got
        else:
            resized = cv2.resize(frame, (nw, nh), interpolation=interp)
        out[:, :y0] = pad_value
        out[:, y0 + nh :] = pad_value
        out[:, y0 : y0 + nh, :x0] = pad_value
        out[:, y0 : y0 + nh, x0 + nw :] = pad_value
        # cv2.split de-interleaves straight into the three planes (about 20x faster than NumPy's
        # strided transpose copy); fall back to the copy if OpenCV ever hands back new arrays.
        planes = [out[c, y0 : y0 + nh, x0 : x0 + nw] for c in range(3)]
        got = cv2.split(resized, planes)
        if not all(np.shares_memory(g, out) for g in got):
            out[:, y0 : y0 + nh, x0 : x0 + nw] = resized.transpose(2, 0, 1)
    return info


class Letterboxer:
    """A reusable batch input buffer: ``fill(frames)`` letterboxes frames into it in place.

    >>> lb = Letterboxer((320, 320), "nchw", max_batch=4)
    >>> batch, infos = lb.fill([frame_a, frame_b])   # batch is a view: (2, 3, 320, 320) uint8

    ``buffer`` may be supplied by the caller (for example a page-locked host buffer of the
    TensorRT runtime) so that frames are written straight where the H2D copy reads them.
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        layout: str = "nchw",
        max_batch: int = 1,
        buffer: np.ndarray | None = None,
        pad_value: int = PAD_VALUE,
    ) -> None:
        if layout not in ("nchw", "nhwc"):
            raise InputError(f"unknown layout {layout!r}", "use 'nchw' or 'nhwc'")
        BATCH.check("max_batch", max_batch)  # before the buffer of max_batch images is allocated
        h, w = input_size
        shape = (max_batch, 3, h, w) if layout == "nchw" else (max_batch, h, w, 3)
        if buffer is None:
            buffer = np.empty(shape, np.uint8)
        elif buffer.dtype != np.uint8 or tuple(buffer.shape) != shape:
            raise InputError(f"input buffer must be uint8 {shape}, got {buffer.dtype} {buffer.shape}")
        self.buffer = buffer
        self._scratch = np.empty((h, w, 3), np.uint8) if layout == "nchw" else None
        self.layout = layout
        self.input_size = (h, w)
        self.max_batch = max_batch
        self.pad_value = pad_value

    def fill(self, frames: list[np.ndarray], out: np.ndarray | None = None) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """Letterbox ``frames`` into the buffer (or into ``out``, e.g. a backend's own input memory:
        uint8, one image per frame, the buffer's image shape); returns the filled batch and infos."""
        buf = self.buffer if out is None else out
        if out is not None and (out.dtype != np.uint8 or out.shape[1:] != self.buffer.shape[1:]):
            raise InputError(f"input buffer must be uint8 (N, {', '.join(map(str, self.buffer.shape[1:]))}), "
                             f"got {out.dtype} {out.shape}")
        if not 0 < len(frames) <= min(self.max_batch, buf.shape[0]):
            raise InputError(f"got {len(frames)} frames, this buffer holds 1 to {min(self.max_batch, buf.shape[0])}")
        infos = [letterbox_into(f, buf[i], self.layout, self.pad_value, self._scratch) for i, f in enumerate(frames)]
        return buf[: len(frames)], infos


def letterbox(
    frame: np.ndarray, input_size: tuple[int, int], layout: str = "nchw", pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, LetterboxInfo]:
    """Convenience form that allocates: returns ``(1, ...)`` uint8 batch and the info."""
    lb = Letterboxer(input_size, layout, 1, pad_value=pad_value)
    batch, infos = lb.fill([frame])
    return batch, infos[0]
