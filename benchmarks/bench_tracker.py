"""Host time of one ``Tracker.update`` (``camera --track``), single-threaded, by number of objects.

A synthetic stream of ``--frames`` frames: N objects moving a few pixels a frame, each scoring
0.8 but 0.3 (the tracker's low band: partly hidden) for 8 frames in every 30, N / 2 low-score
clutter boxes, box jitter; every round runs a fresh :class:`~detnet_trt.apps.camera.tracking.Tracker`
over the whole stream, timing every update (wall clock and this thread's CPU time). Reported:
the median over rounds of the mean per update; rounds alternate between the object counts so that
load changes hit all alike. Also the same stream through the textbook Kalman update (a 4 x 4
``numpy.linalg.solve`` per matched track, what the tracker did before) for comparison.

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


def textbook_update(self, means, covs, z):
    """The general Kalman update (S solved in full, per track): the reference the tracker's own is tested against."""
    out_m, out_c = means.copy(), covs.copy()
    for i in range(means.shape[0]):
        m, c = means[i], covs[i]
        std = np.array([m[2], m[3], m[2], m[3]]) / 20
        s = c[:4, :4] + np.diag(std**2)
        gain = np.linalg.solve(s, c[:4, :]).T
        out_m[i] = m + gain @ (z[i] - m[:4])
        out_c[i] = c - gain @ s @ gain.T
    return out_m, out_c


def run_once(dets: list[Detections]) -> tuple[float, float, int]:
    """(wall ms, CPU ms) per update, and the tracked detections of the last frame."""
    t = tracking.Tracker(high=0.5)
    wall = cpu = 0.0
    last = 0
    for d in dets:
        w0, c0 = time.perf_counter(), time.thread_time()
        u = t.update(d)
        cpu += time.thread_time() - c0
        wall += time.perf_counter() - w0
        last = int((u.track_ids >= 0).sum())
    return 1e3 * wall / len(dets), 1e3 * cpu / len(dets), last


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", default="5,10,20,50")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args()
    counts = [int(x) for x in a.objects.split(",")]
    streams = {n: stream(n, a.frames) for n in counts}
    doc: dict = {"machine": machine(), "frames": a.frames, "rounds": a.rounds, "results": []}
    runs: dict[tuple[int, str], list[tuple[float, float, int]]] = {}
    fast = tracking.KalmanBoxFilter.update
    for _ in range(a.rounds):
        for n in counts:
            for kind in ("tracker", "textbook"):
                tracking.KalmanBoxFilter.update = fast if kind == "tracker" else textbook_update  # type: ignore[method-assign]
                try:
                    runs.setdefault((n, kind), []).append(run_once(streams[n]))
                finally:
                    tracking.KalmanBoxFilter.update = fast  # type: ignore[method-assign]
    for n in counts:
        row = {"objects": n, "detections_per_frame": len(streams[n][0])}
        for kind in ("tracker", "textbook"):
            r = runs[(n, kind)]
            row[kind] = {"wall_ms": round(statistics.median(x[0] for x in r), 4),
                         "cpu_ms": round(statistics.median(x[1] for x in r), 4),
                         "rounds_wall_ms": [round(x[0], 4) for x in r], "tracked_last_frame": r[-1][2]}
        doc["results"].append(row)
        print(n, row["tracker"]["wall_ms"], row["textbook"]["wall_ms"])
    doc["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    m = doc["machine"]
    lines = [
        "# Tracker host time per update (`camera --track`)", "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, shared with other jobs (load average {m['loadavg']} at the start, "
        f"{doc['loadavg_end']} at the end), no GPU; Python {m['python']}, NumPy {m['numpy']}  ",
        f"Date: {m['date']}  ",
        f"{a.frames} frames per round, median of {a.rounds} alternating rounds of the mean per update; one thread.", "",
        "| objects | detections / frame | tracked (last frame) | wall ms | CPU ms | textbook KF update: wall ms | CPU ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        t, b = r["tracker"], r["textbook"]
        lines.append(f"| {r['objects']} | {r['detections_per_frame']} | {t['tracked_last_frame']} | {t['wall_ms']:.3f} | "
                     f"{t['cpu_ms']:.3f} | {b['wall_ms']:.3f} | {b['cpu_ms']:.3f} |")
    write_results(a.out, "tracker", doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
