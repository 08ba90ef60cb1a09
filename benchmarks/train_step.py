"""Seconds per training step of detnet_tiny on CPU (forward + loss + backward + SGD step).

Usage::

    python benchmarks/train_step.py [--batch 8] [--size 320] [--steps 10] [--threads 2]

Random uint8 images with two boxes each; reports the median step time and what one epoch of
N images would take. Writes ``benchmarks/results/train_step.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from head_levels import _cpu_model  # type: ignore[import-not-found]

from detnet_trt.core.fileio import atomic_write_text
from detnet_trt.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="detnet_tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_step"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=3, input_size=(args.size, args.size)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    s = float(args.size)
    boxes = torch.tensor([[0.1 * s, 0.1 * s, 0.4 * s, 0.5 * s], [0.5 * s, 0.3 * s, 0.9 * s, 0.9 * s]])
    targets = [{"boxes": boxes, "labels": torch.tensor([0, 2])}] * args.batch
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        loss = model(x, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:  # first step is warm-up
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    res = {
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "step_s_median": round(med, 3),
        "step_s_min": round(min(times), 3),
        "epoch_s_per_300_images": round(med * 300 / args.batch, 1),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
    md = (
        f"# {args.model} training step on CPU\n\n"
        f"batch {args.batch} at {args.size}x{args.size}, forward + loss + backward + SGD step: median "
        f"{res['step_s_median']} s (min {res['step_s_min']} s) over {args.steps} steps; one epoch of 300 "
        f"images ~ {res['epoch_s_per_300_images']} s.\n\nMachine: {res['machine']}\n"
    )
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
