"""Record the demo model's CPU figures: ONNX Runtime FP32 and INT8 Q/DQ, batch 1 and 8.

Rerun from the repository root (takes a few minutes on 2 cores)::

    .venv/bin/python benchmarks/run_cpu_records.py                      # shipped demo model
    .venv/bin/python benchmarks/run_cpu_records.py --checkpoint my.pt   # another checkpoint
    .venv/bin/python benchmarks/run_cpu_records.py --fp32 m.onnx --int8 m.int8.onnx   # given ONNX files

Every step is a ``detnet-trt`` command run without a shell; the commands, their outputs and the
machine (CPU model, cores, load average, package versions) are written under ``--out``
(default ``benchmarks/cpu``):

    synth data (seed 777, never seen in training) -> export FP32 ONNX -> calib-set -> quantize INT8
    -> bench FP32 / INT8 (batch 1,8; JSON + PNG) -> eval FP32 / INT8 (COCO AP) -> compare FP32 vs INT8
    -> RESULTS.md (tables + commands + machine)

Intermediate models and data go to ``--work`` (default ``benchmarks/cpu/work``, not committed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from detnet_trt.core.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CKPT = ROOT / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("detnet-trt")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "detnet_trt"]


def _rel(p: Path | str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


class Runner:
    def __init__(self, log: list[dict]) -> None:
        self.log = log

    def __call__(self, *args: str | Path) -> str:
        cmd = [*_cli(), *map(str, args)]
        shown = "detnet-trt " + " ".join(_rel(a) if isinstance(a, Path) else a for a in args)
        print(f"$ {shown}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        self.log.append({"command": shown, "seconds": round(seconds, 1), "rc": proc.returncode})
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"step failed ({proc.returncode}): {shown}")
        print(proc.stdout.rstrip(), flush=True)
        return proc.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT, help="demo checkpoint (default: the shipped one)")
    ap.add_argument("--fp32", type=Path, help="use this FP32 ONNX instead of exporting the checkpoint")
    ap.add_argument("--int8", type=Path, help="use this INT8 Q/DQ ONNX instead of quantizing the FP32 one")
    ap.add_argument("--data", type=Path, help="COCO-layout dataset (default: synthetic, seed 777)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "cpu")
    ap.add_argument("--work", type=Path, default=None, help="intermediate files (default OUT/work)")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--duration", default="5", help="seconds per batch size and figure")
    ap.add_argument("--eval-images", type=int, default=100, help="val images for AP (default 100)")
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--method", default="minmax", help="calibration method (default minmax, the demo's: results/int8_methods.md)")
    args = ap.parse_args(argv)

    out: Path = args.out
    work: Path = args.work or out / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / ".gitignore").exists():
        (work / ".gitignore").write_text("*\n")  # models and data made here are not committed
    log: list[dict] = []
    run = Runner(log)

    data = args.data
    if data is None:
        data = work / "synth"
        if data.exists():
            shutil.rmtree(data)
        n = int(round(args.eval_images / 0.4))
        run("synth", "--out", data, "--images", str(n), "--seed", "777", "--val-fraction", "0.4")
    fp32 = args.fp32
    if fp32 is None:
        fp32 = work / "detnet_tiny_fp32.onnx"
        run("export", args.checkpoint, "-o", fp32, "--force")
    int8 = args.int8
    if int8 is None:
        calib = work / "calib_set.txt"
        run("calib-set", "--images", data / "images" / "train", "--annotations",
            data / "annotations" / "instances_train.json", "--num", str(args.calib_images), "-o", calib, "--force")
        int8 = work / "detnet_tiny_int8.onnx"
        run("quantize", fp32, "--calib", calib, "-o", int8, "--method", args.method, "--force", "--no-progress")

    records = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        js, png = out / f"ort_{name}.json", out / f"ort_{name}.png"
        run("bench", "--model", model, "--batch", args.batch, "--duration", args.duration, "--warmup", "2",
            "--device", "cpu", "--json", js, "--plot", png, "--force")
        records[name] = json.loads(js.read_text())
    evals = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        js = out / f"eval_{name}.json"
        run("eval", "--model", model, "--data", data, "--limit", str(args.eval_images), "--per-class",
            "--summary", js, "--force", "--quiet")
        evals[name] = json.loads(js.read_text())
    cmp_js = out / "compare_fp32_int8.json"
    run("compare", fp32, int8, "--data", data, "--num", str(args.eval_images), "--json", cmp_js, "--force",
        "--quiet")
    comparison = json.loads(cmp_js.read_text())

    atomic_write_text(out / "RESULTS.md", _markdown(records, evals, comparison, log))
    atomic_write_text(out / "commands.json", json.dumps(log, indent=1) + "\n")
    print(f"wrote {_rel(out / 'RESULTS.md')}")
    return 0


def _markdown(records: dict, evals: dict, comparison: dict, log: list[dict]) -> str:
    m = records["fp32"]["machine"]
    v = m["versions"]
    model = records["fp32"]["model"]
    lines = [
        "# CPU records: demo model, ONNX Runtime FP32 vs INT8 Q/DQ",
        "",
        f"Made {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/run_cpu_records.py`.",
        "",
        f"- Machine: {m['cpu']}, {m['cpu_cores_usable']} usable cores ({m['cpu_cores_logical']} logical), "
        f"{m['memory_gb']} GB; load average {m.get('load_average')} at the start of the FP32 run "
        "(the machine is shared: treat the CV column as the trust indicator)",
        f"- Software: Python {v['python']}, ONNX Runtime {v['onnxruntime']}, NumPy {v['numpy']}, "
        f"OpenCV {v['opencv']}, torch {v['torch']}, detnet-trt {v['detnet_trt']}; {m['os']}",
        f"- Model: {model['name']}, input {model['input_size'][0]}x{model['input_size'][1]} ({model['layout']}), "
        f"top-k {model['topk']}, {model['num_classes']} classes",
        "- Latency is per batch, in ms; images/s = batch x runs / wall time. *infer* = `backend.infer` on a "
        "letterboxed batch; *end-to-end* = letterbox + infer + NMS on 1280x720 frames.",
        "",
        "| precision | batch | figure | median ms | mean ms | p90 | p99 | CV | images/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rec in records.items():
        for r in rec["results"]:
            for fig in ("infer", "end_to_end"):
                if fig not in r:
                    continue
                s = r[fig]["latency_ms"]
                lines.append(
                    f"| {name.upper()} | {r['batch']} | {'infer' if fig == 'infer' else 'end-to-end'} | "
                    f"{s['median']:.2f} | {s['mean']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['cv']:.2f} | "
                    f"{r[fig]['throughput_ips']:.1f} |"
                )
    warns = [f"{name.upper()}: {w}" for name, rec in records.items() for w in rec["warnings"]]
    if warns:
        lines += ["", "Warnings from the runs:", *[f"- {w}" for w in warns]]
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
    ev = evals["fp32"]
    lines += [
        "",
        f"COCO bbox metrics (0-100) on {ev['num_images']} synthetic val images (seed 777; pycocotools):",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, e in evals.items():
        lines.append(f"| {name.upper()} | " + " | ".join(f"{e['metrics'][k]:.2f}" for k in keys) + " |")
    d = {k: evals["int8"]["metrics"][k] - evals["fp32"]["metrics"][k] for k in keys}
    lines.append("| INT8 - FP32 | " + " | ".join(f"{d[k]:+.2f}" for k in keys) + " |")
    mt = comparison["matching"]
    lines += [
        "",
        f"FP32 vs INT8 (`detnet-trt compare`): {int(mt['a_dets'])} FP32 and {int(mt['b_dets'])} INT8 detections "
        f"at conf {mt['conf']}, matched (same class, IoU >= "
        f"{mt['match_iou']}): {100 * mt['matched_a']:.1f}% of FP32's, {100 * mt['matched_b']:.1f}% of INT8's "
        f"(mean IoU {mt['mean_iou']:.3f}, mean score difference {mt['mean_score_diff']:.4f}). Raw outputs, FP32 "
        "as the reference (\"aligned rows\": INT8's top-k rows paired with FP32's by class and nearest box):",
        "",
        "| output | max abs | mean abs | max rel | mean rel |",
        "|---|---|---|---|---|",
        *[
            f"| {k} | {d['max_abs']:.4g} | {d['mean_abs']:.4g} | {d['max_rel']:.4g} | {d['mean_rel']:.4g} |"
            for k, d in comparison["outputs"].items()
            if k != "class_ids"
        ],
        "",
        "Plots: `ort_fp32.png`, `ort_int8.png`. Full records: `ort_*.json` (with every sample), `eval_*.json`, "
        "`compare_fp32_int8.json`.",
        "",
        "Commands (from the repository root):",
        "",
        "```",
        *[f"{c['command']}    # {c['seconds']} s" for c in log],
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
