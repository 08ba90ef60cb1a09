"""Many cameras, one engine: the batching gain of the multi-stream camera loop, and its host overhead.

For N = 1, 2, 4, 8 video files (mp4v, made here with OpenCV, different content each), two ways
of getting through all of their frames with the same backend:

- *batched*: one run of the multi-stream loop over the N files
  (:func:`detnet_trt.apps.camera.run_multi_loop`: a decode-ahead thread per file, the batcher, one
  backend call per batch, NMS and sinks per stream);
- *one at a time*: N runs of the single-source loop (:func:`detnet_trt.apps.camera.run_loop`,
  what ``detnet-trt camera --source FILE`` runs), one after another.

Gain = total frames per second batched / total frames per second one at a time (the sum of the
frames over the sum of the runs' wall times). Two backends:

- ``standin``: a fixed-cost stand-in for an accelerator, whose every call costs a fixed sleep
  (``--fixed-ms``, default 20 ms: launch, synchronisation and transfer latency) plus a small cost
  per image (``--per-image-ms``, default 1 ms), and returns a realistic top-K of 1000 candidates
  (10 above the score threshold, 5 in the tracker's low band, moving a few pixels per call). Goal
  (issue 17): gain >= 2.5 at N = 4.
- ``ort``: the shipped demo model (``detnet_tiny_synth.pt`` exported to ONNX, 320x320) on ONNX
  Runtime's CPU provider, recorded as measured (a CPU gains little from batching).

Overhead at 8 streams (stand-in): more batched runs with the loop's ``--track`` (ByteTrack,
``detnet_trt.apps.camera.tracking``: every stream's tracks in one tracker, one
``Tracker.update_many`` step per batch), every ``Tracker.update_many`` and every
``Batcher.gather`` timed twice: wall clock, and the CPU time of the thread that runs it
(``time.thread_time``: the host work itself, without the time the thread waits for the GIL or a
core while the capture, pre-processing and inference threads, and other jobs on a shared machine,
run). Reported per frame and per batch: the batcher (gathering, outside its waits), the tracker,
and, apart, the letterboxing into the batch buffer (which runs on the pre-processing thread while
the previous batch is inferred). Goal: batcher + tracker host CPU time per batch under 10 % of the
stand-in's time per batch (the wall-clock share is printed too; on a loaded machine it mostly
measures waiting).

    .venv/bin/python benchmarks/bench_multicam.py                 # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_multicam.py --streams 1,2,4,8 --frames 60 --repeats 3 --fixed-ms 20 --per-image-ms 1
    .venv/bin/python benchmarks/bench_multicam.py --overhead-only  # the overhead runs alone, merged into the results

Results: ``benchmarks/results/multicam.{json,md}`` with the machine and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _timing import machine, write_results

from detnet_trt.apps.camera import CameraOptions, open_source, run_loop, run_multi_loop
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.backends.base import Backend
from detnet_trt.runtime.detector import Detector

ROOT = Path(__file__).resolve().parent.parent
DEMO_CKPT = ROOT / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"


class FixedCostBackend(Backend):
    """The stand-in: every call sleeps ``fixed + n * per_image`` seconds (n images in the batch)
    and returns the same top-K candidates for each image, the ten good boxes moving 2 px per call."""

    name = "fixed-cost-standin"

    def __init__(self, fixed: float, per_image: float, input_size=(512, 512), topk: int = 1000, classes: int = 80) -> None:
        super().__init__(ModelMeta("standin", [f"c{i}" for i in range(classes)], input_size, topk=topk))
        self.fixed, self.per_image = fixed, per_image
        rng = np.random.default_rng(0)
        h, w = input_size
        xy = rng.uniform(0, [w - 140, h - 40], (topk, 2)).astype(np.float32)
        # ten objects apart, inside the picture of a 16:9 video (the letterbox pads above and below it: a box
        # there would be clipped to zero height, never match and start a new track every frame)
        xy[:10] = np.stack([np.linspace(10, w - 160, 10), np.linspace(0.25 * h, 0.7 * h - 40, 10)], axis=1)
        wh = rng.uniform(8, 40, (topk, 2)).astype(np.float32)
        self._boxes = np.concatenate([xy, xy + wh], axis=1)
        scores = rng.uniform(0, 0.05, topk).astype(np.float32)
        scores[:10] = np.linspace(0.9, 0.5, 10)  # above conf 0.25
        scores[10:15] = np.linspace(0.2, 0.12, 5)  # the tracker's low band
        self._scores = scores
        self._cls = rng.integers(0, classes, topk).astype(np.int32)
        self.calls = 0

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n = images.shape[0]
        t_end = time.perf_counter() + self.fixed + n * self.per_image
        boxes = self._boxes.copy()
        boxes[:10, 0::2] += 2.0 * (self.calls % 60)
        self.calls += 1
        out = {
            "boxes": np.repeat(boxes[None], n, axis=0),
            "scores": np.repeat(self._scores[None], n, axis=0),
            "class_ids": np.repeat(self._cls[None], n, axis=0),
        }
        left = t_end - time.perf_counter()
        if left > 0:
            time.sleep(left)
        return out


@contextlib.contextmanager
def timed_calls(cls: type, name: str) -> Any:
    """Times every call of the method ``cls.name`` while inside (wraps it): wall seconds and the
    calling thread's CPU seconds (``time.thread_time``), summed, and the number of calls."""
    acc = {"wall_s": 0.0, "cpu_s": 0.0, "calls": 0}
    orig = getattr(cls, name)

    def timed(self, *args, **kwargs):
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            return orig(self, *args, **kwargs)
        finally:
            acc["cpu_s"] += time.thread_time() - c0
            acc["wall_s"] += time.perf_counter() - w0
            acc["calls"] += 1

    setattr(cls, name, timed)
    try:
        yield acc
    finally:
        setattr(cls, name, orig)


def make_videos(folder: Path, n: int, frames: int, size=(360, 640)) -> list[Path]:
    """``n`` mp4v files of ``frames`` frames each: textured background, moving shapes, different per file."""
    h, w = size
    paths = []
    for k in range(n):
        rng = np.random.default_rng(100 + k)
        base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        path = folder / f"cam{k}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (w, h))
        if not writer.isOpened():
            raise SystemExit(f"cannot write {path} with mp4v")
        for i in range(frames):
            img = base.copy()
            for j in range(4):
                x, y = (40 + 7 * i + 90 * j + 13 * k) % (w - 60), 40 + 70 * j
                cv2.rectangle(img, (x, y), (x + 50, y + 40), (255 - 40 * j, 60 * j, 30 * k), -1)
            writer.write(img)
        writer.release()
        paths.append(path)
    return paths


def batched(backend: Backend, videos: list[Path], post: PostprocessConfig, track: bool = False) -> dict[str, Any]:
    """One multi-stream run over ``videos`` (with ``track``: the loop's ``--track``, default settings)."""
    options = CameraOptions(log_interval=None)
    if track:
        from detnet_trt.apps.camera.tracking import TrackerConfig

        config, post = TrackerConfig().resolve(post)  # as run_camera does: the detector keeps the low band
        options = CameraOptions(log_interval=None, track=config)
    srcs = [open_source(str(v), threaded=True) for v in videos]
    try:
        s = run_multi_loop(Detector(backend, post), srcs, [v.stem for v in videos], [], options)
    finally:
        for src in srcs:
            src.close()
    return s


def one_at_a_time(backend: Backend, videos: list[Path], post: PostprocessConfig) -> dict[str, Any]:
    frames, wall = 0, 0.0
    for v in videos:
        with open_source(str(v)) as src:
            s = run_loop(Detector(backend, post), src, (), CameraOptions(log_interval=None))
        frames += s["frames"]
        wall += s["wall_s"]
    return {"frames": frames, "wall_s": round(wall, 4), "fps": round(frames / wall, 3) if wall else 0.0}


def measure(backend: Backend, streams: list[int], videos: list[Path], repeats: int, post: PostprocessConfig) -> list[dict]:
    rows = []
    for n in streams:
        runs = []
        for _ in range(repeats):  # alternate, so that load changes hit both alike
            b = batched(backend, videos[:n], post)
            o = one_at_a_time(backend, videos[:n], post)
            runs.append({"batched_fps": b["fps"], "one_at_a_time_fps": o["fps"], "gain": round(b["fps"] / o["fps"], 3),
                         "frames": b["frames"], "batch_sizes": b["batch_sizes"], "infer_mean_ms": b["stages"]["infer"]["mean_ms"]})
            print(f"  N={n}: batched {b['fps']:.1f} FPS, one at a time {o['fps']:.1f} FPS, gain {runs[-1]['gain']:.2f}",
                  flush=True)
        gains = [r["gain"] for r in runs]
        mid = runs[gains.index(statistics.median_low(gains))]
        rows.append({"streams": n, **mid, "gains": gains})
    return rows


def overhead_run(backend: FixedCostBackend, videos: list[Path], post: PostprocessConfig) -> dict[str, Any]:
    """One batched run with tracking: the batcher's and the tracker's host time, wall and CPU."""
    from detnet_trt.apps.camera.batcher import Batcher
    from detnet_trt.apps.camera.tracking import Tracker

    plain = batched(backend, videos, post)
    with timed_calls(Tracker, "update_many") as trk, timed_calls(Batcher, "gather") as gat:
        s = batched(backend, videos, post, track=True)
    frames, batches = s["frames"], s["batches"]
    infer = s["stages"]["infer"]["mean_ms"]
    batcher_wall, batcher_cpu = s["batcher_host_ms"], 1e3 * gat["cpu_s"]  # wall: outside the batcher's waits
    tracker_wall, tracker_cpu = 1e3 * trk["wall_s"], 1e3 * trk["cpu_s"]
    tracks = s.get("tracking", {})
    per = {"frame": frames, "batch": batches}
    out: dict[str, Any] = {
        "streams": len(videos), "frames": frames, "batches": batches, "fps": s["fps"],
        "fps_without_tracking": plain["fps"], "tracker_calls": trk["calls"], "gather_calls": gat["calls"],
        "tracks_started": sum(v.get("tracks", 0) for v in tracks.values()) if isinstance(tracks, dict) else None,
        "infer_ms_per_batch": infer, "letterbox_ms_per_batch": s["stages"]["pre"]["mean_ms"],
        "letterbox_ms_per_frame": round(s["stages"]["pre"]["mean_ms"] * batches / frames, 4),
    }
    for unit, n in per.items():
        out[f"batcher_wall_ms_per_{unit}"] = round(batcher_wall / n, 4)
        out[f"batcher_cpu_ms_per_{unit}"] = round(batcher_cpu / n, 4)
        out[f"tracker_wall_ms_per_{unit}"] = round(tracker_wall / n, 4)
        out[f"tracker_cpu_ms_per_{unit}"] = round(tracker_cpu / n, 4)
    out["tracker_cpu_ms_per_update"] = round(tracker_cpu / max(1, trk["calls"]), 4)
    out["tracker_wall_ms_per_update"] = round(tracker_wall / max(1, trk["calls"]), 4)
    out["cpu_share_of_infer"] = round((batcher_cpu + tracker_cpu) / batches / infer, 4)
    out["wall_share_of_infer"] = round((batcher_wall + tracker_wall) / batches / infer, 4)
    return out


def overhead(backend: FixedCostBackend, videos: list[Path], post: PostprocessConfig, repeats: int) -> dict[str, Any]:
    """``repeats`` overhead runs: the one with the median CPU share, and every run's shares."""
    runs = [overhead_run(backend, videos, post) for _ in range(repeats)]
    for r in runs:
        print(f"  overhead at {r['streams']} streams: tracker {r['tracker_cpu_ms_per_update']:.3f} ms CPU / "
              f"{r['tracker_wall_ms_per_update']:.3f} ms wall per step, batcher + tracker "
              f"{100 * r['cpu_share_of_infer']:.1f} % (CPU) / {100 * r['wall_share_of_infer']:.1f} % (wall) of the "
              "stand-in's time per batch", flush=True)
    shares = [r["cpu_share_of_infer"] for r in runs]
    mid = runs[shares.index(statistics.median_low(shares))]
    return {**mid, "runs_cpu_share": shares, "runs_wall_share": [r["wall_share_of_infer"] for r in runs]}


def _markdown(doc: dict) -> str:
    m, a = doc["machine"], doc["args"]
    lines = [
        "# Multi-camera batching (camera loop, several video files)",
        "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, shared with other jobs (load average {m['loadavg']} at the "
        f"start, {doc['loadavg_end']} at the end), no GPU; Python {m['python']}, OpenCV {m['opencv']}, NumPy {m['numpy']}  ",
        f"Date: {m['date']}  ",
        f"Videos: {a['frames']} frames of 640x360 mp4v per stream. Gain = total FPS of one batched run over N streams / "
        f"total FPS of N single-source runs one after another; median of {a['repeats']} alternating runs (all listed).",
        "",
    ]
    for key, title in (("standin", f"Fixed-cost stand-in ({a['fixed_ms']:g} ms a call + {a['per_image_ms']:g} ms an "
                                   "image, 512x512 input, top-K 1000)"),
                       ("ort", "ONNX Runtime CPU, demo model (320x320, FP32)")):
        if key not in doc:
            continue
        lines += [f"## {title}", "", "| N | batched FPS | one at a time FPS | gain | runs | batch sizes | infer ms/batch |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in doc[key]:
            lines.append(f"| {r['streams']} | {r['batched_fps']:.1f} | {r['one_at_a_time_fps']:.1f} | **{r['gain']:.2f}** | "
                         f"{', '.join(f'{g:.2f}' for g in r['gains'])} | {r['batch_sizes']} | {r['infer_mean_ms']:.1f} |")
        lines.append("")
    if "standin" in doc:
        at4 = next((r for r in doc["standin"] if r["streams"] == 4), None)
        if at4 is not None:
            lines += [f"Goal (stand-in, N = 4): gain >= 2.5: **{'met' if at4['gain'] >= 2.5 else 'NOT met'}** "
                      f"({at4['gain']:.2f}).", ""]
    o = doc.get("overhead")
    if o and "cpu_share_of_infer" in o:
        lines += _overhead_markdown(o)
    return "\n".join(lines)


def _overhead_markdown(o: dict) -> list[str]:
    lines = [f"## Host overhead at {o['streams']} streams (stand-in, tracker on)", ""]
    om = o.get("machine")
    if om:  # measured apart (--overhead-only)
        lines += [f"Command: `{om['command']}`  ",
                  f"Machine: {om['cpu_model']}, {om['cpus']} CPUs, shared with other jobs (load average {om['loadavg']} "
                  f"at the start, {o.get('loadavg_end', 'n/a')} at the end), no GPU  ", f"Date: {om['date']}  ", ""]
    lines += [
        "Host time of the batcher (`Batcher.gather` outside its waits) and the tracker (`Tracker.update_many`, one "
        "step per batch for all its streams), as **CPU time** of the thread that runs them (`time.thread_time`: the work itself) and as wall "
        "time (which also holds the time the thread waits for the GIL or a core, while the capture, "
        "pre-processing and inference threads and other jobs run). The goal is judged on CPU time.", "",
        "| per | batcher CPU ms | batcher wall ms | tracker CPU ms | tracker wall ms | batcher + tracker CPU ms | "
        "wall ms | letterbox ms (overlapped) | stand-in infer ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for unit in ("frame", "batch"):
        bc, bw = o[f"batcher_cpu_ms_per_{unit}"], o[f"batcher_wall_ms_per_{unit}"]
        tc, tw = o[f"tracker_cpu_ms_per_{unit}"], o[f"tracker_wall_ms_per_{unit}"]
        lb = o["letterbox_ms_per_frame"] if unit == "frame" else o["letterbox_ms_per_batch"]
        inf = o["infer_ms_per_batch"] * (o["batches"] / o["frames"] if unit == "frame" else 1)
        lines.append(f"| {unit} | {bc:.3f} | {bw:.3f} | {tc:.3f} | {tw:.3f} | {bc + tc:.3f} | {bw + tw:.3f} | "
                     f"{lb:.3f} | {inf:.3f} |")
    cpu, wall = o["cpu_share_of_infer"], o["wall_share_of_infer"]
    lines += [
        "",
        f"Batcher + tracker host **CPU time** = {100 * cpu:.1f} % of the stand-in's time per batch (goal < 10 %: "
        f"**{'met' if cpu < 0.10 else 'NOT met'}**); wall time {100 * wall:.1f} % "
        f"({'under' if wall < 0.10 else 'over'} 10 %). Median of {len(o.get('runs_cpu_share', [cpu]))} runs by CPU "
        f"share; all runs, CPU: {', '.join(f'{100 * x:.1f} %' for x in o.get('runs_cpu_share', [cpu]))}; wall: "
        f"{', '.join(f'{100 * x:.1f} %' for x in o.get('runs_wall_share', [wall]))}. Tracker per step: "
        f"{o['tracker_cpu_ms_per_update']:.3f} ms CPU, {o['tracker_wall_ms_per_update']:.3f} ms wall. "
        f"{o['tracks_started']} tracks started over {o['streams']} streams of 10 moving objects; {o['fps']:.1f} FPS "
        f"in total with tracking, {o['fps_without_tracking']:.1f} without. The letterbox runs on the "
        "pre-processing thread during the previous batch's inference, so it costs CPU, not throughput, while the "
        "host keeps up.",
        "",
    ]
    return lines


def _ort_backend(tmp: Path) -> Backend:
    from detnet_trt.export.onnx import export_onnx
    from detnet_trt.runtime.backends import load_backend

    return load_backend(export_onnx(DEMO_CKPT, tmp / "detnet_tiny.onnx"))


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "n/a"


def _overhead_only(args: argparse.Namespace) -> int:
    """The overhead runs alone (8 streams, stand-in), written into the existing results."""
    import json

    path = Path(args.out) / "multicam.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run the whole benchmark once first (without --overhead-only)")
    doc = json.loads(path.read_text())
    m = machine()
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(Path(tmp), 8, args.frames)
        with FixedCostBackend(args.fixed_ms / 1e3, args.per_image_ms / 1e3) as standin:
            o = overhead(standin, videos, PostprocessConfig(), args.overhead_repeats)
    doc["overhead"] = {**o, "machine": m, "loadavg_end": _loadavg(),
                       "args": {k: getattr(args, k) for k in ("frames", "fixed_ms", "per_image_ms", "overhead_repeats")}}
    write_results(args.out, "multicam", doc, _markdown(doc))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="1,2,4,8", help="stream counts N (comma-separated)")
    p.add_argument("--frames", type=int, default=60, help="frames per video file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fixed-ms", type=float, default=20.0, help="stand-in: fixed cost of a call")
    p.add_argument("--per-image-ms", type=float, default=1.0, help="stand-in: cost per image of a call")
    p.add_argument("--backends", default="standin,ort", help="standin, ort or both")
    p.add_argument("--overhead-repeats", type=int, default=3, help="overhead runs (the median is reported)")
    p.add_argument("--overhead-only", action="store_true",
                   help="only the overhead runs; they replace the overhead section of the existing results")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.overhead_only:
        return _overhead_only(args)
    streams = [int(x) for x in args.streams.split(",")]
    kinds = args.backends.split(",")
    doc: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    post = PostprocessConfig()
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(Path(tmp), max(streams), args.frames)
        if "standin" in kinds:
            print("stand-in backend", flush=True)
            standin = FixedCostBackend(args.fixed_ms / 1e3, args.per_image_ms / 1e3)
            with standin:
                doc["standin"] = measure(standin, streams, videos, args.repeats, post)
                doc["overhead"] = overhead(standin, videos[:8], post, args.overhead_repeats)
        if "ort" in kinds:
            print("ONNX Runtime CPU backend", flush=True)
            with _ort_backend(Path(tmp)) as ort:
                Detector(ort, post)([np.zeros((360, 640, 3), np.uint8)])  # warm-up
                doc["ort"] = measure(ort, streams, videos, args.repeats, post)
                doc["ort_backend"] = ort.describe()
    doc["loadavg_end"] = _loadavg()
    write_results(args.out, "multicam", doc, _markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
