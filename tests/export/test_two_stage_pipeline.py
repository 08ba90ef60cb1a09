"""The imported two-stage detector through every CPU stage, by the CLI commands a user runs:
import-detnet-pytorch -> export -> calib-set -> quantize (with the AP gate) -> infer (checkpoint,
ONNX, Q/DQ ONNX) -> eval -> compare -> bench -> camera -> export-triton. Tiny: a random-weight DetNet-59
FPN in DetNet_pytorch's key layout, 64 x 96 input, 20 proposals, synthetic scenes."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from fpn_checkpoint import their_checkpoint

from detnet_trt.cli import main
from detnet_trt.core.onnx_meta import read_onnx_meta
from detnet_trt.data.synth import CLASS_NAMES


def _run(*argv: str) -> None:
    rc = main(list(argv))
    assert rc == 0, f"detnet-trt {' '.join(argv)} exited {rc}"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pipeline")
    theirs = d / "fpn_1_1_1.pth"
    torch.save(their_checkpoint(num_classes=len(CLASS_NAMES) + 1), theirs)
    (d / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    _run("synth", "--out", str(d / "data"), "--images", "8", "--val-fraction", "0.5", "--size", "96", "--seed", "1")
    _run("import-detnet-pytorch", str(theirs), "--classes", str(d / "classes.txt"), "-o", str(d / "model.pt"),
         "--input-size", "64x96", "--proposals", "20")
    _run("export", str(d / "model.pt"), "-o", str(d / "model.onnx"))
    _run("calib-set", "--images", str(d / "data" / "images" / "train"), "--num", "4", "--min-images", "1", "-o", str(d / "set.txt"))
    _run("quantize", str(d / "model.onnx"), "--calib", str(d / "set.txt"), "-o", str(d / "model.int8.onnx"),
         "--val-data", str(d / "data"), "--no-progress")  # the default placement: RPN and box head INT8 too
    return {"dir": d, "pt": d / "model.pt", "onnx": d / "model.onnx", "int8": d / "model.int8.onnx", "data": d / "data"}


def test_qdq_on_convs_and_fc_only(work) -> None:
    """By default every Conv and Gemm weight is quantized; RoI selection, RoIAlign, decode and NMS stay float."""
    proto = onnx.load(str(work["int8"]))
    producer = {o: n for n in proto.graph.node for o in n.output}
    layers = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    assert layers and all(producer.get(n.input[1]) is not None and producer[n.input[1]].op_type == "DequantizeLinear"
                          for n in layers)
    consumers = {n.op_type for n in proto.graph.node for t in n.input
                 if producer.get(t) is not None and producer[t].op_type == "DequantizeLinear"}
    assert consumers <= {"Conv", "Gemm", "Add", "Slice", "Concat", "Sub", "Mul", "Pad", "Resize", "Shape"}, consumers
    for n in proto.graph.node:
        if n.op_type in ("NonMaxSuppression", "TopK", "RoiAlign"):
            rois = n.input[1] if n.op_type == "RoiAlign" else n.input[0]
            assert producer[rois].op_type != "DequantizeLinear"
            if n.op_type != "RoiAlign":
                assert producer[n.input[0]].op_type != "DequantizeLinear"
    meta = read_onnx_meta(work["int8"])
    assert meta.precision == "int8" and meta.nms == "onnx" and meta.extra["detector"] == "two_stage"
    from detnet_trt.quantize.calibrate import read_quant_provenance

    prov = read_quant_provenance(work["int8"])
    assert prov is not None and prov["keep_head_float"] is False and prov["plan"]["head_final_layers"] == []


def test_infer_eval_compare_bench_triton(work, capsys) -> None:
    d = work["dir"]
    val = work["data"] / "images" / "val"
    images = sorted(p for p in val.rglob("*") if p.suffix in (".png", ".jpg"))
    for model in ("pt", "onnx", "int8"):
        out = d / f"infer_{model}"
        _run("infer", str(images[0]), str(images[1]), "--model", str(work[model]), "--out", str(out), "--conf", "0.0")
        dets = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()] if (out / "detections.jsonl").exists() else None
        assert any(out.iterdir())
        if dets is not None:
            assert len(dets) == 2
    _run("eval", "--model", str(work["onnx"]), "--data", str(work["data"]), "--summary", str(d / "eval.json"), "--quiet")
    summary = json.loads((d / "eval.json").read_text())
    assert "AP" in json.dumps(summary)
    _run("compare", str(work["onnx"]), str(work["int8"]), "--data", str(work["data"]), "--json", str(d / "cmp.json"), "--quiet")
    assert json.loads((d / "cmp.json").read_text())
    _run("bench", "--model", str(work["onnx"]), "--iterations", "2", "--warmup", "0", "--no-e2e", "--json", str(d / "bench.json"))
    assert json.loads((d / "bench.json").read_text())
    _run("camera", "--model", str(work["int8"]), "--source", str(val), "--headless", "--jsonl", str(d / "cam.jsonl"),
         "--max-frames", "3", "--conf", "0.0")
    frames = [json.loads(line) for line in (d / "cam.jsonl").read_text().splitlines()]
    assert len(frames) == 3 and all("detections" in f for f in frames)
    _run("export-triton", str(work["onnx"]), "--repo", str(d / "repo"), "--kind", "cpu")
    assert (d / "repo").is_dir() and any((d / "repo").rglob("config.pbtxt"))
    capsys.readouterr()


def test_sensitivity_report_ranks_its_layers(work) -> None:
    """The per-layer error report (what the AP gate prints over budget) on the two-stage Q/DQ model:
    every quantized Conv and Gemm measured, finite errors, a --keep-float pattern for the worst."""
    import math

    from detnet_trt.quantize.calibset import read_calib_set
    from detnet_trt.quantize.sensitivity import format_layer_table, layer_errors, sample_inputs

    meta = read_onnx_meta(work["onnx"])
    images = sample_inputs(read_calib_set(work["dir"] / "set.txt").files, meta, 2)
    layers = layer_errors(work["onnx"], work["int8"], images)
    ops = [le.op_type for le in layers]
    fp32 = [n.op_type for n in onnx.load(str(work["onnx"])).graph.node]
    assert ops.count("Gemm") == fp32.count("Gemm") == 4, ops  # fc6, fc7, class scores, deltas
    assert ops.count("Conv") == fp32.count("Conv"), ops
    assert all(math.isfinite(le.output_error) and le.own_error >= 0.0 for le in layers)
    assert layers == sorted(layers, key=lambda le: le.own_error, reverse=True)
    assert layers[0].node in format_layer_table(layers, top=5) and layers[0].keep_float_pattern()
