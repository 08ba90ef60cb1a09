"""Start-up cost of the CLI: wall time of ``detnet-trt --help`` and what ``python -X importtime``
says the package import costs, for one or more source trees (the layout issue: the root
``__init__`` imported 16 submodules, so ``--help`` loaded OpenCV and onnx).

Each tree is timed in a fresh interpreter per run, round-robin (one run of each tree in turn), so
that load on the machine hits every tree alike:

    .venv/bin/python benchmarks/cli_startup.py                         # this checkout
    git worktree add /tmp/old c81ff3e                                  # the tree before the layout
    .venv/bin/python benchmarks/cli_startup.py --tree before=/tmp/old --tree after=. --runs 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _timing import machine, write_results

HEAVY = ("cv2", "onnx", "onnxruntime", "torch", "numpy", "tensorrt", "pycuda")


def _env(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree))


def wall(tree: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "detnet_trt", "--help"], cwd="/", env=_env(tree),
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def importtime(tree: Path) -> tuple[float, list[str]]:
    """Cumulative import time of ``detnet_trt`` in ms, and the heavy modules ``--help`` loaded."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "detnet_trt", "--help"], cwd="/",
                         env=_env(tree), capture_output=True, text=True, check=True)
    cumulative, loaded = 0.0, set()
    for line in res.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cum, name = line.split("|")
            name = name.strip()
            loaded.add(name.split(".")[0])
            if name == "detnet_trt":
                cumulative = int(cum) / 1000.0
    return cumulative, sorted(loaded & set(HEAVY))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", metavar="NAME=PATH",
                    help="a source tree to time (default: this checkout, as 'this')")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in (args.tree or [f"this={Path(__file__).resolve().parents[1]}"]))
    paths = {name: Path(p).resolve() for name, p in trees.items()}
    walls: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.runs):
        for name, p in paths.items():
            walls[name].append(wall(p))
    rows, doc = [], {"format": "detnet_trt.cli_startup/1", "machine": machine(), "runs": args.runs, "trees": {}}
    for name, p in paths.items():
        imp_ms, heavy = importtime(p)
        fig = {"path": str(p), "wall_s": walls[name], "median_s": statistics.median(walls[name]),
               "min_s": min(walls[name]), "import_ms": imp_ms, "heavy_modules": heavy}
        doc["trees"][name] = fig
        rows.append(f"| {name} | {fig['median_s']:.3f} | {fig['min_s']:.3f} | {imp_ms:.1f} | "
                    f"{', '.join(heavy) or 'none'} |")
    m = doc["machine"]
    md = (f"# CLI start-up\n\nCommand: `{m['command']}`; {m['cpu_model']}, {m['cpus']} CPUs, Python {m['python']}, "
          f"load average {m['loadavg']} ({m['date']}); {args.runs} round-robin runs per tree.\n\n"
          "| tree | `--help` wall, median (s) | min (s) | `import detnet_trt` cumulative (ms, -X importtime) "
          "| heavy modules loaded by `--help` |\n| --- | ---: | ---: | ---: | --- |\n" + "\n".join(rows) + "\n")
    write_results(args.out, "cli_startup", doc, md)
    print(md)


if __name__ == "__main__":
    main()
