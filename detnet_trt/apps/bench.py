"""Latency and throughput of any backend, trtexec-style, plus the end-to-end figure.

For each batch size, :func:`benchmark` (what :class:`BenchOptions` says; the end-to-end figure
post-processes with a :class:`~detnet_trt.core.config.PostprocessConfig`) warms up, then times ``backend.infer`` on a letterboxed
batch (the **infer-only** figure, what trtexec reports as host latency) and the whole deployment
path on real-size frames, letterbox + infer + NMS (the **end-to-end** figure), each for
``duration`` seconds (and at least ``min_iterations`` runs) or exactly ``iterations`` runs.

Statistics per figure (milliseconds per batch): min, mean, median, p90, p95, p99, max, std and
the coefficient of variation (std/mean); throughput in images/s = batch x runs / wall time. A
run whose CV is above ``cv_threshold`` gets a warning (another process competing for the CPU/GPU,
clocks ramping, thermal throttling): trust its figures less, rerun.

GPU-side split (optional backend hook): a backend that can time its own stages defines
``gpu_timings() -> dict[str, float] | None`` giving, for the most recent ``infer()``, the
milliseconds of each stage measured with CUDA events (keys ``h2d``, ``compute``, ``d2h``; any
subset, extra keys are summarised too; ``None`` when nothing was measured). It is looked up with
``getattr(backend, "gpu_timings", None)`` (``last_timings`` is accepted as an alias) and called
after every timed ``infer()``; backends without it simply get no GPU split.

Per-layer times (``profile_layers`` runs, ``--profile-layers``): a backend that defines
``profile_layers(batch, runs) -> {layer name: [ms per run]}`` (the TensorRT backend, through
TensorRT's ``IProfiler``, as ``trtexec --dumpProfile``) is profiled at each batch size in runs of
its own after the timed ones (profiling slows every layer down, so it never touches the latency
figures); each entry of the record gets ``layers``: the layers slowest first, ms per run and share
of the per-run sum (:func:`detnet_trt.trt.profiler.summarize_layer_times`). Asking it of a backend
without the hook is an error before any work.

The record holds the machine and software (CPU model and cores, GPU and clocks from
``nvidia-smi`` when present, TensorRT / ONNX Runtime / CUDA / torch versions, without importing
TensorRT) so results can be compared across machines; :func:`plot_benchmark` draws the latency
distributions per batch size and throughput against batch size.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import PostprocessConfig
from ..core.errors import InputError
from ..core.limits import BATCH, COUNT, COUNT_OR_ZERO, SECONDS, SECONDS_OR_ZERO, SIDE, check_ranges
from ..runtime.backends.base import Backend

CV_THRESHOLD = 0.10
DEFAULT_FRAME_SIZE = (720, 1280)  # (H, W): a 720p camera frame for the end-to-end figure
_GPU_HOOKS = ("gpu_timings", "last_timings")


# --- statistics ------------------------------------------------------------------------------------
def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """min / mean / median / p90 / p95 / p99 / max / std / cv of latencies in ms (linear percentiles)."""
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        raise InputError("no latency samples to summarise")
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    p = np.percentile(a, [50, 90, 95, 99])
    return {
        "n": int(a.size),
        "min": float(a.min()),
        "mean": mean,
        "median": float(p[0]),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
        "max": float(a.max()),
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
    }


def _gpu_hook(backend: Backend) -> Callable[[], Any] | None:
    for name in _GPU_HOOKS:
        hook = getattr(backend, name, None)
        if callable(hook):
            return hook
    return None


def _time_loop(
    fn: Callable[[], Any],
    *,
    warmup: float,
    duration: float | None,
    iterations: int | None,
    min_iterations: int,
    after: Callable[[], None] | None = None,
) -> tuple[list[float], float]:
    """Warm up for ``warmup`` s (at least one call), then time ``fn``; returns (ms samples, wall s)."""
    t_end = time.perf_counter() + warmup
    fn()
    while time.perf_counter() < t_end:
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    stop = None if duration is None else start + duration
    while True:
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        if after is not None:
            after()
        n = len(samples)
        if iterations is not None and duration is None:
            if n >= iterations:
                break
        elif time.perf_counter() >= stop and n >= max(min_iterations, iterations or 0):  # type: ignore[operator]
            break
    return samples, time.perf_counter() - start


def _figure(samples: list[float], wall: float, batch: int) -> dict[str, Any]:
    stats = latency_stats(samples)
    return {
        "latency_ms": stats,
        "throughput_ips": batch * len(samples) / wall if wall > 0 else 0.0,
        "samples_ms": [round(v, 4) for v in samples],
    }


def _frames(frame_size: tuple[int, int], count: int, seed: int = 0) -> list[np.ndarray]:
    """Deterministic synthetic scenes of ``frame_size`` (real content: NMS gets real candidates)."""
    import cv2

    from ..data.synth import render_scene

    rng = np.random.default_rng(seed)
    h, w = frame_size
    f = min(1.0, 360 / max(h, w))  # draw small, then upscale: real content, no seconds spent drawing
    small = (max(32, round(h * f)), max(32, round(w * f)))
    base = [
        cv2.resize(render_scene(rng, small, max_objects=8)[0], (w, h), interpolation=cv2.INTER_LINEAR)
        for _ in range(min(count, 2))
    ]
    return [base[i % len(base)] for i in range(count)]


# --- the benchmark -------------------------------------------------------------------------------------

def _time_infer(
    backend: Backend, batch_input: np.ndarray, batch: int, hook: Callable[[], dict[str, Any] | None] | None,
    loop: dict[str, Any],
) -> dict[str, Any]:
    """The ``infer`` figure of one batch size (and the backend's GPU-side times, when it has a hook)."""
    gpu: list[dict[str, float]] = []

    def collect() -> None:
        t = hook() if hook is not None else None
        if t:
            gpu.append({k: float(v) for k, v in t.items()})

    samples, wall = _time_loop(lambda: backend.infer(batch_input), after=collect if hook is not None else None, **loop)
    entry: dict[str, Any] = {"batch": batch, "infer": _figure(samples, wall, batch)}
    if gpu:
        keys = sorted({k for t in gpu for k in t})
        entry["gpu_ms"] = {
            k: {s: v for s, v in latency_stats([t[k] for t in gpu if k in t]).items() if s != "n"} for k in keys
        }
    return entry


def _time_end_to_end(
    detector: Any, backend: Backend, frames: list[np.ndarray], batch: int, loop: dict[str, Any],
    frame_size: tuple[int, int],
) -> dict[str, Any]:
    """The letterbox + infer + NMS figure of one batch size, with each stage's share of the mean:
    what ``Detector.__call__`` does, letterboxing into the backend's lent input where it has one
    (the TensorRT engine's pinned buffer: no host copy before the H2D)."""
    stages = {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}

    def e2e() -> None:
        t0 = time.perf_counter()
        with backend.input_buffer(len(frames)) as buf:
            x, infos = detector.letterboxer.fill(frames, out=buf)
            t1 = time.perf_counter()
            out = backend.infer(x)
        t2 = time.perf_counter()
        detector.postprocess(out, infos)
        t3 = time.perf_counter()
        stages["preprocess"] += t1 - t0
        stages["infer"] += t2 - t1
        stages["postprocess"] += t3 - t2

    e_samples, e_wall = _time_loop(e2e, **loop)
    fig = _figure(e_samples, e_wall, batch)
    # stage sums include warm-up calls: report their shares of the mean instead of raw sums
    total = sum(stages.values()) or 1.0
    fig["stages_ms"] = {k: fig["latency_ms"]["mean"] * v / total for k, v in stages.items()}
    fig["frame_size"] = list(frame_size)
    return fig


@dataclass(frozen=True)
class BenchOptions:
    """What :func:`benchmark` measures and for how long.

    ``batches``: the batch sizes (``--batch``); timing: ``duration`` seconds per figure
    (``--duration``, default 3 s when neither is given, with at least ``min_iterations`` runs), or
    exactly ``iterations`` runs (``--iterations``) when only that is given, after ``warmup``
    seconds (``--warmup``); ``end_to_end`` (off with ``--no-e2e``) adds the letterbox + infer + NMS
    figure on ``frame_size`` (H, W) frames (``--frame-size WxH``); a figure whose coefficient of
    variation is above ``cv_threshold`` gets a warning; ``profile_layers`` runs (``--profile-layers``)
    add each batch size's per-layer times, from runs of their own.
    """

    batches: tuple[int, ...] = (1,)
    duration: float | None = None
    iterations: int | None = None
    warmup: float = 1.0
    min_iterations: int = 10
    end_to_end: bool = True
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE
    cv_threshold: float = CV_THRESHOLD
    profile_layers: int = 0  # profiled runs per batch size (TensorRT's per-layer times); 0: none

    def __post_init__(self) -> None:
        batches = tuple(int(b) for b in self.batches)
        object.__setattr__(self, "batches", batches)
        if not batches or min(batches) < 1:
            raise InputError(f"--batch {','.join(map(str, batches))}: batch sizes must be >= 1", "for example --batch 1,4,8")
        if self.duration is not None and self.duration <= 0:
            raise InputError(f"--duration must be > 0, got {self.duration}")
        if self.iterations is not None and self.iterations < 1:
            raise InputError(f"--iterations must be >= 1, got {self.iterations}")
        check_ranges(*(("--batch", BATCH, b) for b in batches), ("--duration", SECONDS, self.duration),
                     ("--iterations", COUNT, self.iterations), ("--warmup", SECONDS_OR_ZERO, self.warmup),
                     *(("--frame-size", SIDE, side) for side in self.frame_size),
                     ("--profile-layers", COUNT_OR_ZERO, self.profile_layers))

    @property
    def timed_duration(self) -> float | None:
        """The seconds timed per figure: ``duration``, or 3 when neither it nor ``iterations`` is given."""
        return 3.0 if self.duration is None and self.iterations is None else self.duration

    def loop(self) -> dict[str, Any]:
        """The keyword arguments of the timing loop (and the record's settings)."""
        return {"warmup": self.warmup, "duration": self.timed_duration, "iterations": self.iterations,
                "min_iterations": self.min_iterations}


def _check_batches(backend: Backend, batches: Sequence[int]) -> None:
    if backend.max_batch is not None and max(batches) > backend.max_batch:
        raise InputError(
            f"batch {max(batches)} exceeds this {backend.name} model's maximum batch {backend.max_batch}",
            "pass smaller --batch values, or rebuild the engine with a larger maximum batch",
        )


def _unstable(entry: dict[str, Any], cv_threshold: float) -> list[str]:
    """The warnings of one batch size's figures whose coefficient of variation is too high."""
    warnings = []
    for name in ("infer", "end_to_end"):
        if name in entry:
            cv = entry[name]["latency_ms"]["cv"]
            if cv > cv_threshold:
                warnings.append(
                    f"batch {entry['batch']} {name}: unstable run, coefficient of variation {cv:.2f} > {cv_threshold:.2f} "
                    "(other load on the machine, clock changes or throttling); rerun on an idle machine"
                )
    return warnings


def _measure(
    backend: Backend, options: BenchOptions, post: PostprocessConfig, bar: Any, hook: Callable[[], Any] | None
) -> list[dict[str, Any]]:
    """One entry per batch size: the infer figure and, when asked, the end-to-end one."""
    from ..runtime.detector import Detector

    loop = options.loop()
    frames_all = _frames(options.frame_size, max(options.batches))
    results: list[dict[str, Any]] = []
    for b in options.batches:
        detector = Detector(backend, post, max_batch=b)
        frames = frames_all[:b]
        batch_input, _ = detector.preprocess(frames)
        batch_input = batch_input.copy()
        entry = _time_infer(backend, batch_input, b, hook, loop)
        if bar is not None:
            bar.update(1)
        if options.profile_layers:
            from ..trt.profiler import summarize_layer_times

            times = getattr(backend, "profile_layers")(batch_input, options.profile_layers)
            entry["layers"] = summarize_layer_times(times, options.profile_layers)
        if options.end_to_end:
            entry["end_to_end"] = _time_end_to_end(detector, backend, frames, b, loop, options.frame_size)
            if bar is not None:
                bar.update(1)
        results.append(entry)
    return results


def benchmark(
    backend: Backend,
    options: BenchOptions = BenchOptions(),
    post: PostprocessConfig = PostprocessConfig(),
    *,
    progress: bool = False,
    machine: bool = True,
) -> dict[str, Any]:
    """Benchmark ``backend`` (opened here if needed) at each of ``options.batches``; returns the
    JSON record. The end-to-end figure post-processes with ``post`` (the deployment thresholds);
    ``machine`` adds :func:`machine_info`.
    """
    _check_batches(backend, options.batches)
    if options.profile_layers and not callable(getattr(backend, "profile_layers", None)):
        raise InputError(f"--profile-layers needs a TensorRT engine; this is a {backend.name} model",
                         "per-layer times come from TensorRT's profiler: bench an .engine")
    was_open = backend.is_open
    backend.open()
    meta = backend.meta
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(options.batches) * (2 if options.end_to_end else 1), desc="bench", unit="run")
    try:
        hook = _gpu_hook(backend)
        results = _measure(backend, options, post, bar, hook)
    finally:
        if bar is not None:
            bar.close()
        if not was_open:
            backend.close()
    warnings = [w for entry in results for w in _unstable(entry, options.cv_threshold)]
    record: dict[str, Any] = {
        "format": "detnet_trt.bench/1",
        "model": {
            "name": meta.model,
            "input_size": list(meta.input_size),
            "layout": meta.layout,
            "precision": meta.precision,
            "topk": meta.topk,
            "nms": meta.nms,
            "num_classes": meta.num_classes,
        },
        "backend": backend.describe(),
        "settings": {**options.loop(), "end_to_end": options.end_to_end, "frame_size": list(options.frame_size),
                     "conf": post.conf, "iou": post.iou, "cv_threshold": options.cv_threshold,
                     "gpu_timings_hook": hook is not None, "profile_layers": options.profile_layers},
        "results": results,
        "warnings": warnings,
    }
    if machine:
        record["machine"] = machine_info()
    return record


# --- machine and software ---------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _run(cmd: list[str]) -> str | None:
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


_GPU_FIELDS = ("name", "driver_version", "memory.total", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
               "power.limit", "pstate", "temperature.gpu")


def _gpus() -> list[dict[str, str]]:
    out = _run(["nvidia-smi", f"--query-gpu={','.join(_GPU_FIELDS)}", "--format=csv,noheader"])
    if not out:
        return []
    gpus = []
    for line in out.strip().splitlines():
        vals = [v.strip() for v in line.split(",")]
        gpus.append(dict(zip(_GPU_FIELDS, vals)))
    return gpus


def _cuda_driver_version() -> str | None:
    out = _run(["nvidia-smi"])
    if out and "CUDA Version:" in out:
        return out.split("CUDA Version:", 1)[1].split()[0].strip(" |")
    return None


def machine_info() -> dict[str, Any]:
    """CPU, memory, GPU (``nvidia-smi``), OS and the versions of the software that runs models."""
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = {
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "torch": _version("torch"),
        "opencv": _version("opencv-python") or _version("opencv-python-headless") or _version("opencv-contrib-python"),
        "tensorrt": _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt-libs"),
        "pycuda": _version("pycuda"),
        "detnet_trt": _version("detnet-trt"),
    }
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_gb": mem_gb,
        "load_average": load,  # 1/5/15 min when the record was made: other work competes for the CPU
        "os": platform.platform(),
        "python_impl": sys.implementation.name,
        "versions": versions,
        "gpus": _gpus(),
        "cuda_driver": _cuda_driver_version(),
    }
    torch_mod = sys.modules.get("torch")  # only if already imported: importing torch is slow
    if torch_mod is not None:
        info["versions"]["torch_cuda"] = getattr(getattr(torch_mod, "version", None), "cuda", None)
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        info["onnxruntime_providers"] = list(ort.get_available_providers())
    return info


# --- presentation ---------------------------------------------------------------------------------------
def format_table(record: dict[str, Any]) -> str:
    """Markdown table: one row per batch size and figure."""
    head = "| batch | figure | min | mean | median | p90 | p95 | p99 | max | CV | images/s |"
    lines = [head, "|" + "---|" * 11]
    for r in record["results"]:
        for name in ("infer", "end_to_end"):
            if name not in r:
                continue
            s = r[name]["latency_ms"]
            label = "infer" if name == "infer" else "end-to-end"
            lines.append(
                f"| {r['batch']} | {label} | {s['min']:.2f} | {s['mean']:.2f} | {s['median']:.2f} | {s['p90']:.2f} | "
                f"{s['p95']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | {s['cv']:.2f} | {r[name]['throughput_ips']:.1f} |"
            )
        if "gpu_ms" in r:
            split = ", ".join(f"{k} {v['mean']:.3f}" for k, v in r["gpu_ms"].items())
            lines.append(f"| {r['batch']} | GPU split (mean ms) | {split} |" + " |" * 8)
    splits = [
        f"batch {r['batch']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["end_to_end"]["stages_ms"].items())
        for r in record["results"]
        if "end_to_end" in r
    ]
    if splits:
        lines += ["", "end-to-end split (mean ms): " + "; ".join(splits)]
    return "\n".join(lines)


def format_layer_table(record: dict[str, Any], top: int = 10) -> str:
    """The ``top`` slowest layers of each batch size that was profiled (``--profile-layers``)."""
    from ..trt.profiler import format_layer_times

    parts = [f"per-layer time, batch {r['batch']} (TensorRT profiler):\n" + format_layer_times(r["layers"], top)
             for r in record["results"] if "layers" in r]
    return "\n\n".join(parts)


def plot_benchmark(record: dict[str, Any], out: str | os.PathLike[str], title: str | None = None) -> Path:
    """PNG: latency distributions per batch size (infer-only and end-to-end) and throughput vs batch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..core.fileio import atomic_open

    res = record["results"]
    fig = Figure(figsize=(11, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    data, labels, colors = [], [], []
    for r in res:
        for name, color in (("infer", "#4c72b0"), ("end_to_end", "#dd8452")):
            if name in r:
                data.append(r[name]["samples_ms"])
                labels.append(f"b{r['batch']}\n{'infer' if name == 'infer' else 'e2e'}")
                colors.append(color)
    parts = ax1.violinplot(data, showmedians=True, showextrema=True)
    for body, c in zip(parts["bodies"], colors):
        body.set_facecolor(c)
        body.set_alpha(0.6)
    ax1.set_xticks(range(1, len(labels) + 1), labels)
    ax1.set_ylabel("latency per batch (ms)")
    lo, hi = min(min(d) for d in data), max(max(d) for d in data)
    if lo > 0 and hi / lo > 10:  # batch sizes far apart: a log axis keeps the small ones readable
        ax1.set_yscale("log")
    ax1.set_title("latency distribution")
    ax1.grid(axis="y", alpha=0.3)
    bs = [r["batch"] for r in res]
    ax2.plot(bs, [r["infer"]["throughput_ips"] for r in res], "o-", color="#4c72b0", label="infer only")
    if all("end_to_end" in r for r in res):
        ax2.plot(bs, [r["end_to_end"]["throughput_ips"] for r in res], "s-", color="#dd8452", label="end-to-end")
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("images / s")
    ax2.set_xticks(bs)
    ax2.set_title("throughput")
    ax2.grid(alpha=0.3)
    ax2.legend()
    m = record.get("model", {})
    b = record.get("backend", {})
    cpu = record.get("machine", {}).get("cpu", "")
    gpus = record.get("machine", {}).get("gpus") or []
    where = gpus[0].get("name", "") if gpus else cpu
    fig.suptitle(title or f"{m.get('name', '')} {m.get('precision', '')} {tuple(m.get('input_size', ()))} "
                 f"on {b.get('backend', '')} - {where}", fontsize=10)
    fig.tight_layout()
    p = Path(out)
    with atomic_open(p, "wb") as f:
        fig.savefig(f, format="png")
    return p


__all__ = ["CV_THRESHOLD", "BenchOptions", "benchmark", "format_table", "latency_stats", "machine_info", "plot_benchmark"]
