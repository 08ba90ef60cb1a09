"""Shared by the benchmark scripts: repeated timing, the machine description, writing results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def time_per_call(fn: Callable[[], object], calls: int, rounds: int, warmup: int = 20) -> dict:
    """Per-call time in ms: ``rounds`` rounds of ``calls`` back-to-back calls; the median of the
    round means is reported (robust to other processes on a shared machine), with all rounds."""
    for _ in range(warmup):
        fn()
    means = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - t0) / calls * 1e3)
    return {
        "median_ms": float(np.median(means)),
        "min_ms": float(np.min(means)),
        "max_ms": float(np.max(means)),
        "rounds_ms": [round(m, 4) for m in means],
        "calls_per_round": calls,
    }


def time_interleaved(fns: dict[str, Callable[[], object]], calls: int, rounds: int, warmup: int = 20) -> dict:
    """Like :func:`time_per_call` for several functions, measured round-robin (one round of each,
    then the next round), so that load changes on a shared machine hit all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    means: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            means[key].append((time.perf_counter() - t0) / calls * 1e3)
    return {
        k: {
            "median_ms": float(np.median(v)),
            "min_ms": float(np.min(v)),
            "max_ms": float(np.max(v)),
            "rounds_ms": [round(x, 4) for x in v],
            "calls_per_round": calls,
        }
        for k, v in means.items()
    }


def add_timing_args(ap: argparse.ArgumentParser, calls: int, rounds: int = 15) -> None:
    """``--calls`` (back-to-back calls a round), ``--rounds`` (for :func:`time_interleaved`) and
    ``--out`` (the results folder)."""
    ap.add_argument("--calls", type=int, default=calls)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))


def machine_lines(m: dict, note: str = "shared with other jobs") -> list[str]:
    """The Markdown lines of a timing record's command, machine (``note`` in brackets after the CPU
    count) and date, from :func:`machine`'s description ``m``."""
    return [
        f"Command: `{m['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs ({note}), pinned to CPU {m['affinity']}, "
        f"OpenCV threads {m['cv2_threads']}; Python {m['python']}, NumPy {m['numpy']}, OpenCV {m['opencv']}  ",
        f"Date: {m['date']}; load average at the end {m['loadavg']}.",
    ]


def machine() -> dict:
    """CPU model and count, the CPUs this process may use, versions, load."""
    import cv2

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    fields = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in lscpu.splitlines() if ":" in ln)}
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "n/a"
    return {
        "cpu_model": fields.get("Model name", platform.processor()),
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cv2_threads": cv2.getNumThreads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
        "loadavg": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": _command(),
    }


def _command() -> str:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = f"taskset -c {','.join(map(str, cpus))} " if cpus and len(cpus) < (os.cpu_count() or 1) else ""
    return pin + " ".join([".venv/bin/python", *sys.argv])


def write_results(out_dir: str | Path, name: str, doc: dict, markdown: str) -> None:
    """``<out_dir>/<name>.json`` (the full record) and ``<name>.md`` (its tables)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.md'}")
