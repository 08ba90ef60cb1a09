"""Residual / FPN Add Q/DQ placement: COCO AP of the demo model with both Add inputs quantized
(the placement before issue 15) against only the non-fused input quantized (NVIDIA's placement
guidance, :func:`detnet_trt.quantize.placement.residual_inputs`), with ONNX Runtime on CPU.

Accuracy, not speed (the speed gain is TensorRT's conv+add fusion, which needs a GPU). The shipped
checkpoint is exported to FP32 ONNX and quantized twice per calibration method on the demo's
committed calibration set (``calibration/demo_synth_seed2026.txt``); "both inputs" is made by the
same code with :func:`residual_inputs` returning no Add (so nothing is un-quantized at the adds).
Each model is evaluated (``detnet_trt.evaluation.coco_eval.evaluate``: conf 0.001, IoU 0.6, 100
detections) on the val split of synthetic datasets made by ``detnet-trt synth``::

    .venv/bin/python benchmarks/qdq_residual.py

Work files go to ``--work`` (default ``benchmarks/cpu/work/qdq_residual``, git-ignored).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import onnx
from _accuracy import CALIB_IMAGES, add_common_args, calibration_record, score_models, synth_datasets, work_dir
from _timing import write_results

from detnet_trt.export.onnx import export_onnx
from detnet_trt.quantize import placement
from detnet_trt.quantize.calibrate import quantize_onnx
from detnet_trt.quantize.options import QuantizeOptions

SYNTH = (("demo seed 2026", 100, 2026, 0.4), ("seed 777", 250, 777, 0.4))
METHODS = ("minmax", "entropy")


def _qdq_at_adds(path: Path) -> dict[str, int]:
    """How many Add inputs of the model are fed by a Q/DQ pair, and how many Q/DQ nodes it has."""
    model = onnx.load(str(path))
    producer = {t: n for n in model.graph.node for t in n.output}
    add_inputs = sum(1 for n in model.graph.node if n.op_type == "Add" for t in n.input
                     if t in producer and producer[t].op_type == "DequantizeLinear")
    qdq = sum(1 for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return {"add_inputs_with_qdq": add_inputs, "qdq_nodes": qdq}


def _quantize(fp32: Path, calib: str, out: Path, method: str, calib_images: Path, both: bool) -> Path:
    real = placement.residual_inputs
    if both:
        placement.residual_inputs = lambda model: {}  # the placement before: no Add input left float
    try:
        return quantize_onnx(fp32, calib, out, QuantizeOptions(method=method), force=True, progress=False,
                             calib_images=calib_images)
    finally:
        placement.residual_inputs = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "qdq_residual")
    args = ap.parse_args()
    work = work_dir(args.work)
    datasets = synth_datasets(work, SYNTH)
    calib_images = work / CALIB_IMAGES

    t0 = time.perf_counter()
    fp32 = export_onnx(args.checkpoint, work / "fp32.onnx", force=True)
    models: dict[str, tuple[Path, dict]] = {"FP32": (fp32, {})}
    for m in METHODS:
        for both, label in ((True, "both Add inputs"), (False, "non-fused input only")):
            path = _quantize(fp32, args.calib, work / f"int8_{m}_{'both' if both else 'skip'}.onnx", m,
                             calib_images, both)
            models[f"INT8 {m}, {label}"] = (path, _qdq_at_adds(path))
    rows = score_models(models, datasets)
    doc = calibration_record("qdq_residual", args, datasets, time.perf_counter() - t0, rows)
    write_results(args.out, "qdq_residual", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    names = list(doc["datasets"])
    fp32 = doc["results"][0]
    lines = [
        "# Residual / FPN Add Q/DQ placement: COCO AP (ONNX Runtime, CPU)",
        "",
        f"Command: `{doc['machine']['command']}`  ",
        f"Checkpoint `{doc['checkpoint']}`, calibration set `{doc['calibration_set']}` (48 demo train images). "
        "AP (0-100, pycocotools, conf 0.001, IoU 0.6) on the val split of each synthetic dataset "
        "(" + ", ".join(f"{k}: {v['images']} images" for k, v in doc["datasets"].items()) + "); "
        "in brackets the difference to FP32. 'both Add inputs': Q/DQ on both inputs of every convolution-fed "
        "Add (before issue 15); 'non-fused input only': Q/DQ only on the input that is not the output of the "
        "convolution TensorRT fuses the Add into (now).  ",
        f"Date: {doc['machine']['date']}; {doc['machine']['cpu_model']}, {doc['machine']['cpus']} CPUs "
        "(the shared development machine, no GPU; accuracy does not depend on load).",
        "",
        "| model | Add inputs with Q/DQ | Q/DQ nodes | " + " | ".join(names) + " | mean Δ |",
        "| --- | --- | --- |" + " --- |" * (len(names) + 1),
    ]
    for r in doc["results"]:
        deltas = [r[n] - fp32[n] for n in names]
        cells = [f"{r[n]:.2f}" + ("" if r is fp32 else f" ({d:+.2f})") for n, d in zip(names, deltas)]
        mean = "" if r is fp32 else f"{sum(deltas) / len(deltas):+.2f}"
        counts = f"{r.get('add_inputs_with_qdq', '')} | {r.get('qdq_nodes', '')}"
        lines.append(f"| {r['model']} | {counts} | " + " | ".join(cells) + f" | {mean} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
