"""Which DetNet-FPN levels feed the head: FLOPs, parameters, locations and CPU latency.

Usage::

    python benchmarks/head_levels.py [--runs 10] [--threads 2] [--out benchmarks/results/head_levels]

For each variant at its default input size (detnet59 at 512x512, detnet_tiny at 320x320) and
each candidate level set it builds the detector (eval mode, batch 1) and records:

- GMACs of the whole forward (torch.utils.flop_counter counts 2 FLOPs per multiply-add; halved);
- parameters; dense locations fed to the top-K;
- median CPU latency of the eval forward over ``--runs`` runs after one warm-up.

Writes ``<out>.json`` and ``<out>.md`` with the machine (CPU model, cores, load average,
Python/torch versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from detnet_trt.core.fileio import atomic_write_text
from detnet_trt.models import build_model

CHOICES = {
    "p2-p6": ("p2", "p3", "p4", "p5", "p6"),
    "p3-p6": ("p3", "p4", "p5", "p6"),
    "p4-p6": ("p4", "p5", "p6"),
}


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(variant: str, levels: tuple[str, ...], runs: int) -> dict:
    torch.manual_seed(0)
    model = build_model(variant, num_classes=80, head_levels=levels).eval()
    h, w = model.input_size
    x = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    gmacs = counter.get_total_flops() / 2 / 1e9
    with torch.no_grad():
        locations = sum(o[0].shape[-1] * o[0].shape[-2] for o in model.forward_raw(x))
        model(x)  # warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return {
        "variant": variant,
        "input_size": [h, w],
        "levels": list(levels),
        "gmacs": round(gmacs, 3),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "locations": int(locations),
        "cpu_ms_median": round(statistics.median(times), 1),
        "cpu_ms_min": round(min(times), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["detnet_tiny", "detnet59"])
    ap.add_argument("--out", default="benchmarks/results/head_levels")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(v, lv, args.runs) for v in args.variants for lv in CHOICES.values()]
    machine = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": args.threads,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    result = {"machine": machine, "results": rows}
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    lines = [
        "# Head levels: cost of each choice (batch 1, eval forward incl. top-K)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({args.threads} threads), Python {machine['python']}; load average at end "
        f"{machine['load_average_at_end']} (a shared machine: latencies are indicative).",
        "",
        "| variant | input | levels | GMACs | params (M) | locations | CPU ms (median) | CPU ms (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['input_size'][0]}x{r['input_size'][1]} | {','.join(r['levels'])} | "
            f"{r['gmacs']} | {r['params_m']} | {r['locations']} | {r['cpu_ms_median']} | {r['cpu_ms_min']} |"
        )
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
