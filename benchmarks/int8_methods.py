"""INT8 calibration methods compared: COCO AP of each Q/DQ model against FP32 on several datasets.

Accuracy, not speed: it chose the demo's calibration method. The shipped checkpoint is exported
to FP32 ONNX, quantized with each method on the demo's committed calibration set
(``calibration/demo_synth_seed2026.txt``, 48 images of the demo data) and evaluated with ONNX
Runtime on each COCO-layout dataset given (``detnet_trt.evaluation.coco_eval.evaluate``: conf 0.001, IoU 0.6,
100 detections). The datasets are made by ``detnet-trt synth`` unless given::

    .venv/bin/python benchmarks/int8_methods.py            # demo data (seed 2026), seed 777, seed 0

Work files go to ``--work`` (default ``benchmarks/cpu/work/int8_methods``, git-ignored).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _accuracy import CALIB_IMAGES, add_common_args, calibration_record, score_models, synth_datasets, work_dir
from _timing import write_results

from detnet_trt.export.onnx import export_onnx
from detnet_trt.quantize.calibrate import quantize_onnx
from detnet_trt.quantize.options import QuantizeOptions

# (name, images, seed, val fraction): the demo's own data (which the calibration set is from),
# unseen scenes of another seed, and the training seed's distribution (other images than training's).
SYNTH = (("demo seed 2026", 100, 2026, 0.4), ("seed 777", 250, 777, 0.4), ("seed 4242", 250, 4242, 0.4))
METHODS = ("entropy", "percentile", "minmax")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "int8_methods")
    args = ap.parse_args()
    work = work_dir(args.work)
    datasets = synth_datasets(work, SYNTH)
    calib_images = work / CALIB_IMAGES

    t0 = time.perf_counter()
    fp32 = export_onnx(args.checkpoint, work / "fp32.onnx", force=True)
    models: dict[str, tuple[Path, dict]] = {"FP32": (fp32, {})}
    for m in METHODS:
        path = quantize_onnx(fp32, args.calib, work / f"int8_{m}.onnx", QuantizeOptions(method=m), force=True,
                             progress=False, calib_images=calib_images)
        models[f"INT8 {m}"] = (path, {})
    rows = score_models(models, datasets)
    doc = calibration_record("int8_methods", args, datasets, time.perf_counter() - t0, rows)
    write_results(args.out, "int8_methods", doc, _markdown(doc))


def _markdown(doc: dict) -> str:
    names = list(doc["datasets"])
    fp32 = doc["results"][0]
    lines = [
        "# INT8 calibration methods: COCO AP against FP32 (ONNX Runtime, CPU)",
        "",
        f"Command: `{doc['machine']['command']}`  ",
        f"Checkpoint `{doc['checkpoint']}`, calibration set `{doc['calibration_set']}` (48 demo train images). "
        "AP (0-100, pycocotools, conf 0.001, IoU 0.6) on the val split of each synthetic dataset "
        "(" + ", ".join(f"{k}: {v['images']} images" for k, v in doc["datasets"].items()) + "); "
        "in brackets the difference to FP32; the last column is the mean difference.  ",
        f"Date: {doc['machine']['date']}; {doc['machine']['cpu_model']}, {doc['machine']['cpus']} CPUs.",
        "",
        "| model | " + " | ".join(names) + " | mean Δ |",
        "| --- |" + " --- |" * (len(names) + 1),
    ]
    for r in doc["results"]:
        deltas = [r[n] - fp32[n] for n in names]
        cells = [f"{r[n]:.2f}" + ("" if r is fp32 else f" ({d:+.2f})") for n, d in zip(names, deltas)]
        mean = "" if r is fp32 else f"{sum(deltas) / len(deltas):+.2f}"
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {mean} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
