"""Host time of a batch through ``Detector``'s input path: letterbox into the detector's own buffer
and copy into the backend's input (before), against letterbox straight into the backend's lent
input memory (zero-copy, ``Backend.input_buffer``).

The backend here stands in for the TensorRT backend's host side only: its ``infer`` stages the batch
into its input buffer exactly as ``TensorRTBackend._run`` does (a copy unless the batch *is* that
buffer) and returns a top-K with every score 0, so post-processing keeps nothing; there is no GPU
(the buffer is ordinary memory, not page-locked, and no H2D copy follows). So the figure is the
host work that zero-copy removes: one ``np.copyto`` of the whole batch, per batch.

    taskset -c 0 .venv/bin/python benchmarks/bench_zero_copy.py      # one core; ~1 min
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import cv2
import numpy as np
from _timing import add_timing_args, machine, machine_lines, time_interleaved, write_results
from bench_letterbox import synthetic_frame

from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.backends.base import Backend
from detnet_trt.runtime.detector import Detector

TOPK = 100


class StagingBackend(Backend):
    """The TensorRT backend's host side: an input buffer the batch is staged into (copied unless it
    already is that buffer); lends that buffer when ``lend``."""

    name = "staging"

    def __init__(self, meta: ModelMeta, max_batch: int, lend: bool) -> None:
        super().__init__(meta, max_batch)
        self.own = np.empty(meta.input_shape(max_batch), np.uint8)
        self.lend = lend
        self.copies = 0
        n = max_batch
        self.out = {"boxes": np.zeros((n, TOPK, 4), np.float32), "scores": np.zeros((n, TOPK), np.float32),
                    "class_ids": np.zeros((n, TOPK), np.int32)}

    @contextlib.contextmanager
    def input_buffer(self, batch: int) -> Iterator[np.ndarray | None]:
        yield self.own[:batch] if self.lend else None

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        host = self.own[: images.shape[0]]
        if host.__array_interface__["data"][0] != images.__array_interface__["data"][0]:
            np.copyto(host, images)
            self.copies += 1
        n = images.shape[0]
        return {k: v[:n] for k, v in self.out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, help="square model input (512 = detnet59's default)")
    ap.add_argument("--batches", default="1,8")
    add_timing_args(ap, calls=20)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    frame = synthetic_frame()
    meta = ModelMeta("detnet59", ["a"], (args.size, args.size), topk=TOPK)
    post = PostprocessConfig(conf=0.5)
    results = []
    for b in (int(v) for v in args.batches.split(",")):
        frames = [frame] * b
        backends = {"copy into the backend's input (before)": StagingBackend(meta, b, lend=False),
                    "letterbox into the lent input (zero-copy)": StagingBackend(meta, b, lend=True)}
        detectors = {k: Detector(be, post, max_batch=b) for k, be in backends.items()}
        times = time_interleaved({k: (lambda d=d: d(frames)) for k, d in detectors.items()}, args.calls, args.rounds)
        before = times["copy into the backend's input (before)"]["median_ms"]
        for name, t in times.items():
            copies = backends[name].copies
            results.append({"batch": b, "path": name, "host_copies": copies, "saved_ms": before - t["median_ms"], **t})
            print(f"batch {b} {name:45s} {t['median_ms']:.3f} ms (min {t['min_ms']:.3f}, max {t['max_ms']:.3f}); "
                  f"host copies {copies}", flush=True)
        assert backends["letterbox into the lent input (zero-copy)"].copies == 0
    doc = {"benchmark": "zero_copy", "frame": [720, 1280], "input": args.size, "machine": machine(), "results": results}
    write_results(args.out, "zero_copy", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        f"# Detector input path, 1280x720 frames -> {doc['input']}x{doc['input']} NCHW: copy vs zero-copy",
        "",
        *machine_lines(m, "the 2-core dev box, shared with other jobs; no GPU"),
        "",
        "Per batch through `Detector.__call__` (letterbox every frame, the backend's host staging, a post-"
        "processing that keeps nothing): median of the round means (round-robin), fastest and slowest "
        "round. The backend stands in for the TensorRT backend's host side (ordinary memory, no H2D): "
        "the difference is the host copy zero-copy removes.",
        "",
        "| batch | path | median ms | min ms | max ms | host copies | saved ms (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        lines.append(f"| {r['batch']} | {r['path']} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['max_ms']:.3f} | "
                     f"{r['host_copies']} | {r['saved_ms']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
