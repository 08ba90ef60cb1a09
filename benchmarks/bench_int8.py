"""FP32 vs INT8 (Q/DQ) with ONNX Runtime on CPU: COCO AP and latency, recorded with the machine.

    .venv/bin/python benchmarks/bench_int8.py --model detnet_trt/assets/detnet_tiny_synth.pt \
        [--data DIR] [--calib SET] [--method entropy] [--duration 5] [--out benchmarks/results]

``--model``: a checkpoint (exported here to FP32 ONNX with ``detnet_trt.export.onnx.export_onnx``) or
an FP32 ONNX. ``--data``: a COCO-layout folder (train split for the calibration set, val split for
AP); by default the demo's synthetic data (``detnet-trt synth``, 100 images, seed 2026, 40 % val)
is generated under the work folder and calibrated with the committed
``calibration/demo_synth_seed2026.txt``; with ``--data`` the set is made by the demo rule (48
train images, stratified, seed 0) unless ``--calib`` is given.

Writes ``<out>/int8_cpu_<model>.json`` (AP both ways, latency records from
``detnet_trt.apps.bench.benchmark``, quantization provenance, machine) and ``.md`` (the tables).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint (.pt) or FP32 ONNX")
    p.add_argument("--data", help="COCO-layout folder (default: generate the demo's synthetic data)")
    p.add_argument("--calib", help="calibration set file (default: make one by the demo rule)")
    p.add_argument("--calib-num", type=int, default=48)
    p.add_argument("--method", default="entropy", choices=("entropy", "minmax", "percentile"))
    p.add_argument("--keep-float", action="append", default=[])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per latency figure (default 5)")
    p.add_argument("--batches", default="1", help="comma-separated batch sizes (default 1)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    p.add_argument("--work", default="demo_out/bench_int8", help="folder for generated files (git-ignored)")
    p.add_argument("--out", default="benchmarks/results", help="folder for the record")
    args = p.parse_args(argv)

    from detnet_trt.apps.bench import BenchOptions, benchmark, format_table, machine_info
    from detnet_trt.core.fileio import atomic_write_text, sha256_file
    from detnet_trt.data.coco import resolve_coco_dir
    from detnet_trt.evaluation.coco_eval import evaluate
    from detnet_trt.quantize.calibrate import quantize_onnx, read_quant_provenance
    from detnet_trt.quantize.calibset import CalibSet, make_calib_set, read_calib_set
    from detnet_trt.quantize.options import QuantizeOptions
    from detnet_trt.runtime.backends import load_backend

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model)
    if model.suffix == ".onnx":
        fp32 = model
    else:
        from detnet_trt.export.onnx import export_onnx

        fp32 = export_onnx(model, work / f"{model.stem}.fp32.onnx", force=True)
    if args.data:
        data = Path(args.data)
    else:
        from detnet_trt.data.synth import make_synth_dataset

        data = work / "data"
        if not (data / "annotations" / "instances_val.json").is_file():
            make_synth_dataset(data, images=100, seed=2026, val_fraction=0.4, force=True)
    val_ann, val_images = resolve_coco_dir(data, "val")
    calib: Path | CalibSet
    if args.calib:
        calib = Path(args.calib)
    elif not args.data:  # the demo data: its committed set, pointed at the regenerated images
        calib = read_calib_set(Path(__file__).parents[1] / "calibration" / "demo_synth_seed2026.txt",
                               images_dir=data / "images" / "train")
    else:
        train_ann, train_images = resolve_coco_dir(data, "train")
        calib = make_calib_set(train_images, work / "calib_set.txt", annotations=train_ann,
                               num=args.calib_num, seed=0, force=True)
    t0 = time.perf_counter()
    int8 = quantize_onnx(fp32, calib, work / f"{fp32.stem}.int8.onnx",
                         QuantizeOptions(method=args.method, keep_float=tuple(args.keep_float)), force=True)
    quant_s = time.perf_counter() - t0

    batches = [int(b) for b in args.batches.split(",")]
    kwargs: dict[str, Any] = {"providers": "cpu"}
    if args.threads:
        kwargs["threads"] = args.threads
    rows: dict[str, Any] = {}
    for name, path in (("FP32", fp32), ("INT8", int8)):
        res = evaluate(path, val_ann, val_images, backend_kwargs=kwargs)
        with load_backend(path, **kwargs) as backend:
            rec = benchmark(backend, BenchOptions(batches=tuple(batches), duration=args.duration), machine=False)
        rows[name] = {"file": path.name, "sha256": sha256_file(path), "size_mb": round(path.stat().st_size / 2**20, 2),
                      "ap": {k: res.metrics[k] for k in AP_KEYS}, "eval_images": res.num_images, "latency": rec}

    record = {
        "what": "FP32 vs INT8 Q/DQ ONNX, ONNX Runtime CPUExecutionProvider",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": str(model),
        "data": str(data),
        "calib_set": str(calib.path if isinstance(calib, CalibSet) else calib),
        "method": args.method,
        "quantize_seconds": round(quant_s, 1),
        "quantization": read_quant_provenance(int8),
        "results": rows,
        "ap_drop": rows["FP32"]["ap"]["AP"] - rows["INT8"]["ap"]["AP"],
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = Path(args.out)
    stem = f"int8_cpu_{model.stem}"
    atomic_write_text(out / f"{stem}.json", json.dumps(record, indent=2, default=str) + "\n")
    m = record["machine"]
    lines = [
        f"# FP32 vs INT8 (ONNX Runtime, CPU): {model.name}",
        "",
        f"Data: `{data}` (val: {rows['FP32']['eval_images']} images); calibration: `{record['calib_set']}` "
        f"({args.method}); quantization took {quant_s:.1f} s.",
        f"Machine: {m.get('cpu')}, {m.get('cpu_cores_usable')} usable cores, load {m.get('load_average')}; "
        f"onnxruntime {m['versions'].get('onnxruntime')}, python {m['versions'].get('python')}.",
        f"Command: `{record['command']}`",
        "",
        "| model | " + " | ".join(AP_KEYS) + " | size MB |",
        "|---|" + "---|" * (len(AP_KEYS) + 1),
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['ap'][k]:.2f}" for k in AP_KEYS) + f" | {r['size_mb']} |")
    lines.append("| INT8 - FP32 | " + " | ".join(
        f"{rows['INT8']['ap'][k] - rows['FP32']['ap'][k]:+.2f}" for k in AP_KEYS) + " | |")
    for name, r in rows.items():
        lines += ["", f"Latency, {name} (ms):", "", format_table(r["latency"])]
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / (stem + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
