"""Letterbox a 1280x720 frame into the model's uint8 input buffer, against the usual float path.

Goal (issue 4): at most 1 ms median on one core, and at least 3x faster than what most samples do
on the host: resize, pad, BGR->RGB, convert to float32, subtract the mean and divide by the std,
HWC->CHW. detnet_trt's graph does the cast and normalisation itself, so the host only resizes and
pads in uint8, into a buffer allocated once (``Letterboxer.fill``).

Timed per frame, round-robin, on one 1280x720 BGR frame (a smooth synthetic picture):

- ``Letterboxer nhwc``: resize straight into the buffer (no allocation);
- ``Letterboxer nchw``: resize into a scratch HWC buffer, then transpose into the CHW buffer;
- ``float baseline``: cv2.resize + cv2.copyMakeBorder + [..., ::-1] + astype(float32)
  + (x - mean) / std + transpose + ascontiguousarray (a fresh float32 CHW array per frame);
- ``INTER_AREA alone``: just the resize with cv2.INTER_AREA (the usual choice for shrinking),
  which is why the letterbox resizes with INTER_LINEAR.

    taskset -c 0 .venv/bin/python benchmarks/bench_letterbox.py      # one core; ~1 min
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from _timing import add_timing_args, machine, machine_lines, time_interleaved, write_results

from detnet_trt.core.meta import IMAGENET_MEAN, IMAGENET_STD
from detnet_trt.runtime.letterbox import PAD_VALUE, Letterboxer


def synthetic_frame(h: int = 720, w: int = 1280) -> np.ndarray:
    """A smooth picture with edges (gradients, filled shapes, a little noise), BGR uint8."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], -1)
    img += rng.normal(0, 8, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(20):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.circle(img, (x, y), int(rng.integers(20, 150)), c, -1)
    return img


def float_baseline(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The usual sample code: letterbox with a fresh array, then normalise to float32 CHW."""
    mean = np.array(IMAGENET_MEAN, np.float32)
    std = np.array(IMAGENET_STD, np.float32)
    h, w = frame.shape[:2]
    s = min(size[0] / h, size[1] / w)
    nh, nw = round(h * s), round(w * s)
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size[0] - nh) // 2, (size[1] - nw) // 2
    img = cv2.copyMakeBorder(img, top, size[0] - nh - top, left, size[1] - nw - left, cv2.BORDER_CONSTANT,
                             value=(PAD_VALUE,) * 3)
    x = img[..., ::-1].astype(np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def area_resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Only the resize, with INTER_AREA: why the letterbox uses INTER_LINEAR (same output size)."""
    h, w = frame.shape[:2]
    s = min(size[0] / h, size[1] / w)
    return cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="320,512,640", help="square input sizes (512 = detnet59's default)")
    add_timing_args(ap, calls=100)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    frame = synthetic_frame()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        hw = (size, size)
        nhwc = Letterboxer(hw, "nhwc", 1)
        nchw = Letterboxer(hw, "nchw", 1)
        fns = {
            "Letterboxer nhwc (uint8, into buffer)": lambda: nhwc.fill([frame]),
            "Letterboxer nchw (uint8, into buffer)": lambda: nchw.fill([frame]),
            "float baseline (resize+pad+normalise+CHW)": lambda: float_baseline(frame, hw),
            "cv2.resize INTER_AREA alone (not used)": lambda: area_resize(frame, hw),
        }
        times = time_interleaved(fns, args.calls, args.rounds)
        base = times["float baseline (resize+pad+normalise+CHW)"]["median_ms"]
        for name, t in times.items():
            results.append({"input": size, "impl": name, "speedup_vs_float": base / t["median_ms"], **t})
            print(f"{size:4d} {name:45s} {t['median_ms']:.3f} ms (min {t['min_ms']:.3f}, max {t['max_ms']:.3f}) "
                  f"x{base / t['median_ms']:.1f}", flush=True)
    doc = {"benchmark": "letterbox", "frame": [720, 1280], "machine": machine(), "results": results}
    write_results(args.out, "letterbox", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# Letterbox 1280x720 -> model input",
        "",
        *machine_lines(m),
        "",
        "Per-frame time: median of the round means (round-robin rounds of back-to-back calls), fastest and "
        "slowest round; speed-up against the float baseline at the same input size.",
        "",
        "| input | implementation | median ms | min ms | max ms | speed-up vs float |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        lines.append(f"| {r['input']}x{r['input']} | {r['impl']} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | "
                     f"{r['max_ms']:.3f} | {r['speedup_vs_float']:.1f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
