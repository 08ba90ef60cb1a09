"""Host time of the tracker (``camera --track``), single-threaded, by number of objects: one
stream's ``Tracker.update``, and 8 streams' frames in one ``Tracker.update_many`` step (what the
multi-stream loop does per batch) against 8 separate updates.

A synthetic stream of ``--frames`` frames: N objects moving a few pixels a frame, each scoring
0.8 but 0.3 (the tracker's low band: partly hidden) for 8 frames in every 30, N / 2 low-score
clutter boxes, box jitter (each of the 8 streams its own seed); every round runs fresh
:class:`~detnet_trt.apps.camera.tracking.Tracker` s over the whole streams, timing every call (wall
clock and this thread's CPU time). Reported: the median over rounds of the mean per call; rounds
alternate between the object counts and the ways so that load changes hit all alike.

    .venv/bin/python benchmarks/bench_tracker.py
    taskset -c 0 .venv/bin/python benchmarks/bench_tracker.py --objects 5,10,20,50 --frames 300 --rounds 7

Results: ``benchmarks/results/tracker.{json,md}``. In the camera loop the tracker runs on the main
thread beside the capture, pre-processing and inference threads, so its wall time there also holds
waits for the GIL (``benchmarks/bench_multicam.py`` measures it in the loop).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _timing import machine, write_results

from detnet_trt.apps.camera import tracking
from detnet_trt.runtime.postprocess import Detections

ROOT = Path(__file__).resolve().parents[1]


def stream(n: int, frames: int, seed: int = 0) -> list[Detections]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [1200, 650], (n, 2))
    v = rng.uniform(-3, 3, (n, 2))
    wh = rng.uniform(20, 80, (n, 2))
    out = []
    for f in range(frames):
        scores = np.where((f + 7 * np.arange(n)) % 30 < 8, 0.3, 0.8)
        p = xy + v * f
        boxes = np.concatenate([p, p + wh], axis=1) + rng.normal(0, 1.0, (n, 4))
        k = n // 2
        cxy = rng.uniform(0, [1200, 650], (k, 2))
        clutter = np.concatenate([cxy, cxy + rng.uniform(10, 40, (k, 2))], axis=1)
        s = np.concatenate([scores + rng.uniform(-0.05, 0.05, n), rng.uniform(0.1, 0.3, k)])
        order = np.argsort(-s)
        out.append(Detections(np.concatenate([boxes, clutter])[order].astype(np.float32), s[order].astype(np.float32),
                              np.zeros(n + k, np.int32)))
    return out


STREAMS = 8


def run_once(streams: list[list[Detections]], batched: bool) -> tuple[float, float, int]:
    """(wall ms, CPU ms) per step (one frame of every stream), and the tracked detections of the
    last frame of stream 0. ``batched``: one ``update_many`` per step; else one tracker per stream."""
    frames = len(streams[0])
    trackers = [tracking.Tracker(high=0.5)] if batched else [tracking.Tracker(high=0.5) for _ in streams]
    wall = cpu = 0.0
    last = 0
    for f in range(frames):
        w0, c0 = time.perf_counter(), time.thread_time()
        if batched:
            u = trackers[0].update_many([(k, s[f]) for k, s in enumerate(streams)])[0]
        else:
            u = [t.update(s[f]) for t, s in zip(trackers, streams)][0]
        cpu += time.thread_time() - c0
        wall += time.perf_counter() - w0
        last = int((u.track_ids >= 0).sum())
    return 1e3 * wall / frames, 1e3 * cpu / frames, last


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", default="5,10,20,50")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args()
    counts = [int(x) for x in a.objects.split(",")]
    streams = {n: [stream(n, a.frames, seed=k) for k in range(STREAMS)] for n in counts}
    doc: dict = {"machine": machine(), "frames": a.frames, "rounds": a.rounds, "streams": STREAMS, "results": []}
    ways = {"one stream": lambda n: run_once(streams[n][:1], False),
            f"{STREAMS} streams, one tracker each": lambda n: run_once(streams[n], False),
            f"{STREAMS} streams, one update_many step": lambda n: run_once(streams[n], True)}
    runs: dict[tuple[int, str], list[tuple[float, float, int]]] = {}
    for _ in range(a.rounds):
        for n in counts:
            for way, fn in ways.items():
                runs.setdefault((n, way), []).append(fn(n))
    for n in counts:
        row: dict = {"objects": n, "detections_per_frame": len(streams[n][0][0])}
        for way in ways:
            r = runs[(n, way)]
            row[way] = {"wall_ms": round(statistics.median(x[0] for x in r), 4),
                        "cpu_ms": round(statistics.median(x[1] for x in r), 4),
                        "rounds_cpu_ms": [round(x[1], 4) for x in r], "tracked_last_frame": r[-1][2]}
        doc["results"].append(row)
        print(n, {w: row[w]["cpu_ms"] for w in ways}, flush=True)
    doc["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    m = doc["machine"]
    lines = [
        "# Tracker host time per frame (`camera --track`)", "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, shared with other jobs (load average {m['loadavg']} at the start, "
        f"{doc['loadavg_end']} at the end), no GPU; Python {m['python']}, NumPy {m['numpy']}  ",
        f"Date: {m['date']}  ",
        f"{a.frames} frames per round, median of {a.rounds} alternating rounds of the mean per step (one frame of "
        f"each stream); one thread. Times in ms.", "",
        f"| objects per stream | detections / frame | one stream: wall | CPU | {STREAMS} streams, a tracker each: wall | CPU "
        f"| {STREAMS} streams, one `update_many` step: wall | CPU | step CPU / {STREAMS} updates' CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    one, each, step = ways
    for r in doc["results"]:
        a1, e, b = r[one], r[each], r[step]
        lines.append(f"| {r['objects']} | {r['detections_per_frame']} | {a1['wall_ms']:.3f} | {a1['cpu_ms']:.3f} | "
                     f"{e['wall_ms']:.3f} | {e['cpu_ms']:.3f} | {b['wall_ms']:.3f} | {b['cpu_ms']:.3f} | "
                     f"{b['cpu_ms'] / e['cpu_ms']:.2f} |")
    write_results(a.out, "tracker", doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
