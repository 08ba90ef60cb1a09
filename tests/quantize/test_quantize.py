"""INT8 Q/DQ quantization with ONNX Runtime, on a tiny detector-shaped ONNX built from torch here.

The fixture model has what matters for Q/DQ placement: uint8 input with the cast, BGR->RGB and
mean/std normalisation in the graph, convolutions (batch norms folded by the exporter), a
residual add, a head with separate score and box convolutions, and a decode + top-k.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from detnet_trt.core.errors import IncompatibleError, InputError, ModelFileError
from detnet_trt.core.meta import IMAGENET_MEAN, IMAGENET_STD, ModelMeta
from detnet_trt.quantize.calibrate import check_quantized, is_qdq_onnx, quantize_onnx, read_quant_provenance
from detnet_trt.quantize.calibset import make_calib_set, read_calib_set
from detnet_trt.quantize.gate import AccuracyReport
from detnet_trt.quantize.options import AccuracyCheckOptions, QuantizeOptions
from detnet_trt.quantize.sensitivity import layer_errors, sample_inputs

SIZE = 64
pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")


class _TinyDetector(nn.Module):
    def __init__(self, num_classes: int = 3, topk: int = 20) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.BatchNorm2d(8)
        )
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.cls = nn.Conv2d(16, num_classes, 3, 1, 1)
        self.box = nn.Conv2d(16, 4, 3, 1, 1)
        self.num_classes, self.topk, self.stride = num_classes, topk, 4

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images.float().flip(1)
        x = (x - self.mean) / self.std
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = self.down(x)
        n, _, h, w = x.shape
        s = self.cls(x).sigmoid().flatten(2).transpose(1, 2).reshape(n, -1)
        d = torch.relu(self.box(x)).flatten(2).transpose(1, 2) * self.stride
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        c = torch.stack([xs, ys], -1).reshape(1, -1, 2).float() * self.stride + self.stride / 2
        boxes = torch.cat([c - d[..., :2], c + d[..., 2:]], -1)
        scores, idx = s.topk(self.topk, dim=1)
        b = torch.gather(boxes, 1, (idx // self.num_classes).unsqueeze(-1).expand(-1, -1, 4))
        return b, scores, (idx % self.num_classes).to(torch.int32)


def _export(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = _TinyDetector().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)
    torch.onnx.export(
        model, (x,), str(path), input_names=["images"], output_names=["boxes", "scores", "class_ids"],
        dynamic_axes={"images": {0: "N"}}, opset_version=17, dynamo=False,
    )
    proto = onnx.load(str(path))
    for k, v in ModelMeta("tiny_test", ["a", "b", "c"], (SIZE, SIZE), topk=20).to_props().items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("int8")
    img_dir = d / "imgs"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):  # smooth images of varied size (letterboxed with padding)
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(img_dir / f"{i:03d}.png"), cv2.resize(small, (48 + 4 * i, 40), interpolation=cv2.INTER_CUBIC))
    calib = make_calib_set(img_dir, d / "set.txt", num=8, min_images=1)
    fp32 = _export(d / "tiny.onnx", 0)
    int8 = quantize_onnx(fp32, calib, d / "tiny.int8.onnx",
                         QuantizeOptions(method="entropy", calib_cache=d / "cache.json"), progress=False)
    return {"dir": d, "images": img_dir, "calib": calib, "fp32": fp32, "int8": int8, "cache": d / "cache.json"}


def _init(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_qdq_graph_is_per_channel_symmetric_int8(work: dict[str, Path]) -> None:
    model = onnx.load(str(work["int8"]))
    init = _init(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and is_qdq_onnx(work["int8"]) and not is_qdq_onnx(work["fp32"])
    for n in qdq:  # every zero point: int8 and 0 (TensorRT's symmetric quantization)
        zp = init[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    producer = {t: n for n in model.graph.node for t in n.output}
    weight_dqs = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        w = producer.get(conv.input[1])
        if w is None or w.op_type != "DequantizeLinear":
            continue
        weight_dqs += 1
        q_w, scale = init[w.input[0]], init[w.input[1]]
        assert q_w.dtype == np.int8 and q_w.min() >= -127  # symmetric weights: [-127, 127]
        assert scale.shape == (q_w.shape[0],)  # one scale per output channel
        assert {a.name: a.i for a in w.attribute}.get("axis", 1) == 0
        assert len(np.unique(scale)) > 1
        act = producer[conv.input[0]]
        assert act.op_type == "DequantizeLinear" and init[act.input[1]].size == 1  # activations per tensor
    assert weight_dqs == 4  # stem, two block convs, down: the feature extractor


def test_head_final_layers_and_decode_stay_float(work: dict[str, Path]) -> None:
    model = onnx.load(str(work["int8"]))
    producer = {t: n for n in model.graph.node for t in n.output}
    by_name = {n.name: n for n in model.graph.node}
    for name in ("/cls/Conv", "/box/Conv"):
        assert all(producer.get(t) is None or producer[t].op_type != "DequantizeLinear" for t in by_name[name].input)
    # no Q/DQ after the head: every Q/DQ output feeds the feature extractor only
    decode_adds = [n for n in model.graph.node if n.op_type == "Add" and n.name != "/Add"]
    assert decode_adds and all(producer.get(t) is None or producer[t].op_type != "DequantizeLinear"
                               for n in decode_adds for t in n.input)
    assert any(producer.get(t) is not None and producer[t].op_type == "DequantizeLinear" for t in by_name["/Add"].input)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.domain for o in model.opset_import] == [""] and {n.domain for n in model.graph.node} == {""}
    onnx.checker.check_model(model)


def test_provenance_and_metadata(work: dict[str, Path]) -> None:
    meta = ModelMeta.from_props({p.key: p.value for p in onnx.load(str(work["int8"])).metadata_props})
    assert meta is not None and meta.precision == "int8" and meta.input_size == (SIZE, SIZE)
    prov = read_quant_provenance(work["int8"])
    assert prov is not None
    from detnet_trt.core.fileio import sha256_file

    assert prov["fp32_sha256"] == sha256_file(work["fp32"])
    assert prov["calib_set_sha256"] == read_calib_set(work["calib"]).sha256
    assert prov["method"] == "entropy" and prov["calib_images"] == 8 and prov["calib_skipped"] == 0
    assert prov["preprocessing"]["function"].startswith("detnet_trt.preprocess.Letterboxer")
    assert prov["plan"]["head_final_layers"] == ["/cls/Conv", "/box/Conv"]
    assert check_quantized(work["int8"], fp32=work["fp32"], calib=work["calib"]) == prov


@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
def test_ort_runs_it_and_outputs_stay_close_to_fp32(work: dict[str, Path], method: str) -> None:
    cs = read_calib_set(work["calib"])
    path = work["int8"] if method == "entropy" else quantize_onnx(
        work["fp32"], cs, work["dir"] / f"tiny.{method}.onnx", QuantizeOptions(method=method), progress=False
    )
    meta = ModelMeta.from_props({p.key: p.value for p in onnx.load(str(work["fp32"])).metadata_props})
    assert meta is not None
    f32 = ort.InferenceSession(str(work["fp32"]), providers=["CPUExecutionProvider"])
    i8 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in sample_inputs(cs.files, meta, 8):
        _, s_f, _ = f32.run(None, {"images": batch})
        _, s_q, c_q = i8.run(None, {"images": batch})
        assert s_q.shape == s_f.shape and c_q.dtype == np.int32
        worst = max(worst, float(np.abs(np.sort(s_q, axis=1) - np.sort(s_f, axis=1)).max()))
    assert 0.0 < worst < 0.05  # quantized (not identical), yet close on the calibration images


def test_keep_float_patterns(work: dict[str, Path]) -> None:
    out = quantize_onnx(work["fp32"], work["calib"], work["dir"] / "kf.onnx",
                        QuantizeOptions(keep_float=("/block/*",), calib_cache=work["cache"]), progress=False)
    model = onnx.load(str(out))
    producer = {t: n for n in model.graph.node for t in n.output}
    for n in model.graph.node:
        if n.name.startswith("/block/") and n.op_type == "Conv":
            assert all(producer.get(t) is None or producer[t].op_type != "DequantizeLinear" for t in n.input)
    assert read_quant_provenance(out)["keep_float"] == ["/block/*"]
    with pytest.raises(InputError, match="matches no node"):
        quantize_onnx(work["fp32"], work["calib"], work["dir"] / "kf2.onnx",
                      QuantizeOptions(keep_float=("/nothing/*",), calib_cache=work["cache"]), progress=False)


def test_stale_calibration_cache_is_refused(work: dict[str, Path]) -> None:
    other = _export(work["dir"] / "other.onnx", 1)  # another model: different weights
    with pytest.raises(IncompatibleError, match="fp32_sha256.*delete the cache"):
        quantize_onnx(other, work["calib"], work["dir"] / "o.onnx", QuantizeOptions(calib_cache=work["cache"]),
                      progress=False)
    with pytest.raises(IncompatibleError, match="method"):
        quantize_onnx(work["fp32"], work["calib"], work["dir"] / "o.onnx",
                      QuantizeOptions(method="minmax", calib_cache=work["cache"]), progress=False)
    smaller = make_calib_set(work["images"], work["dir"] / "set5.txt", num=5, min_images=1)
    with pytest.raises(IncompatibleError, match="calib_set_sha256"):
        quantize_onnx(work["fp32"], smaller, work["dir"] / "o.onnx", QuantizeOptions(calib_cache=work["cache"]),
                      progress=False)
    assert not (work["dir"] / "o.onnx").exists()


def test_existing_output_reused_only_when_it_matches(work: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    out = work["dir"] / "copy.int8.onnx"
    shutil.copy(work["int8"], out)
    before = out.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        assert quantize_onnx(work["fp32"], work["calib"], out, progress=False) == out
    assert "up to date" in caplog.text and out.stat().st_mtime_ns == before
    with pytest.raises(IncompatibleError, match="method.*--force"):
        quantize_onnx(work["fp32"], work["calib"], out, QuantizeOptions(method="minmax"), progress=False)
    other = _export(work["dir"] / "other2.onnx", 2)
    with pytest.raises(IncompatibleError, match="another FP32"):
        check_quantized(out, fp32=other)
    with pytest.raises(InputError, match="already quantized"):
        quantize_onnx(out, work["calib"], work["dir"] / "twice.onnx", progress=False)
    with pytest.raises(ModelFileError, match="no detnet_trt metadata"):
        bare = onnx.load(str(work["fp32"]))
        del bare.metadata_props[:]
        onnx.save(bare, str(work["dir"] / "bare.onnx"))
        quantize_onnx(work["dir"] / "bare.onnx", work["calib"], work["dir"] / "b.onnx", progress=False)


def test_corrupt_calibration_images_are_skipped_and_counted(
    work: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    img_dir = tmp_path / "imgs"
    shutil.copytree(work["images"], img_dir)
    calib = make_calib_set(img_dir, tmp_path / "set.txt", num=6, min_images=1)
    victim = read_calib_set(calib).files[2]
    victim.write_bytes(b"\x89PNG truncated")  # corrupted after the set was made
    with caplog.at_level(logging.WARNING):
        out = quantize_onnx(work["fp32"], calib, tmp_path / "c.onnx", progress=False)
    prov = read_quant_provenance(out)
    assert prov["calib_skipped"] == 1 and prov["calib_images"] == 5
    assert f"skipped 1 unreadable image(s): {victim.name}" in caplog.text
    with pytest.raises(InputError, match="only 5 of 6 calibration images"):
        quantize_onnx(work["fp32"], calib, tmp_path / "d.onnx", QuantizeOptions(min_images=6), progress=False)


def test_layer_errors_rank_quantized_layers(work: dict[str, Path]) -> None:
    meta = ModelMeta.from_props({p.key: p.value for p in onnx.load(str(work["fp32"])).metadata_props})
    assert meta is not None
    batches = sample_inputs(read_calib_set(work["calib"]).files, meta, 2)
    layers = layer_errors(work["fp32"], work["int8"], batches)
    names = {le.node for le in layers}
    assert {"/stem/stem.0/Conv", "/down/down.0/Conv", "/Add"} <= names and "/cls/Conv" not in names
    assert all(le.output_error > 0 and le.own_error >= 0 for le in layers)
    assert [le.own_error for le in layers] == sorted((le.own_error for le in layers), reverse=True)
    add = next(le for le in layers if le.node == "/Add")
    assert add.weight is None and add.keep_float_pattern() == "/Add"
    stem = next(le for le in layers if le.node == "/stem/stem.0/Conv")
    assert stem.weight and stem.keep_float_pattern() == "/stem/stem.0/Conv"  # 'onnx::' weights: use the node


def test_accuracy_report_budget_and_advice() -> None:
    m = {"AP": 40.0, "AP50": 60.0, "AP75": 42.0}
    ok = AccuracyReport(m, {"AP": 39.8, "AP50": 59.9, "AP75": 41.8}, 0.3)
    assert not ok.over_budget and "within" in ok.advice() and "-0.20" in ok.table()
    bad = AccuracyReport(m, {"AP": 39.0, "AP50": 59.0, "AP75": 41.0}, 0.3, fix_patterns=["/a/Conv"], fix_drop=0.1)
    assert bad.over_budget and "WARNING" in bad.advice() and "--keep-float '/a/Conv'" in bad.advice()


def test_cli_quantize(work: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from detnet_trt.cli import main

    out = tmp_path / "cli.int8.onnx"
    args = ["quantize", str(work["fp32"]), "--calib", str(work["calib"]), "-o", str(out), "--no-progress"]
    assert main([*args, "--method", "minmax", "--keep-float", "re:^/block/block\\.0/"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "minmax" in printed and "box.weight, cls.weight" in printed
    assert read_quant_provenance(out)["keep_float"] == ["re:^/block/block\\.0/"]
    assert main([*args, "--method", "percentile"]) == 2  # exists, made otherwise, no --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--method", "percentile", "--force"]) == 0
    assert read_quant_provenance(out)["method"] == "percentile"


# --- on the real exported model (conftest's tiny_onnx: detnet_tiny, 128 x 128, 3 classes) -----------
@pytest.fixture(scope="module")
def tiny_data(tiny_scenes) -> dict[str, Path]:
    """Synthetic scenes reduced to the tiny model's 3 classes (evaluation matches classes by name)."""
    root = tiny_scenes(12, seed=3, splits=("train", "val"))
    calib = make_calib_set(root / "images" / "train", root / "set.txt",
                           annotations=root / "annotations" / "instances_train.json", num=6, min_images=1)
    return {"root": root, "calib": calib}


def test_real_export_quantizes_and_runs_in_the_ort_backend(
    tiny_onnx: Path, tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    from detnet_trt.runtime.backends import load_backend
    from detnet_trt.runtime.letterbox import letterbox

    out = quantize_onnx(tiny_onnx, tiny_data["calib"], tmp_path / "tiny.int8.onnx", progress=False)
    from detnet_trt.core.onnx_meta import read_onnx_meta
    from detnet_trt.export.check import check_graph

    prov = read_quant_provenance(out)
    assert prov["plan"]["head_final_layers"] and prov["plan"]["quantized_nodes"] > 10
    assert check_graph(onnx.load(str(out)), read_onnx_meta(out)) == []  # TensorRT 8.6 ops, opset, I/O contract
    frame = cv2.imread(str(read_calib_set(tiny_data["calib"]).files[0]))
    with load_backend(tiny_onnx) as f32, load_backend(out) as i8:
        assert i8.meta.precision == "int8" and i8.meta.input_size == f32.meta.input_size
        batch, _ = letterbox(frame, f32.meta.input_size, f32.meta.layout)
        a, b = f32.infer(batch), i8.infer(batch)
    assert set(a) == set(b) and b["scores"].shape == a["scores"].shape
    assert np.abs(np.sort(b["scores"], axis=1) - np.sort(a["scores"], axis=1)).max() < 0.1


def test_accuracy_gate_and_sensitivity_fix_search(
    tiny_onnx: Path, tiny_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from detnet_trt.cli import main
    from detnet_trt.quantize.gate import accuracy_check

    out = quantize_onnx(tiny_onnx, tiny_data["calib"], tmp_path / "g.int8.onnx",
                        QuantizeOptions(calib_cache=tmp_path / "ranges.json"), progress=False)
    # a budget below any possible drop forces the over-budget path: ranking + measured fix attempts
    report = accuracy_check(tiny_onnx, out, tiny_data["root"],
                            AccuracyCheckOptions(budget=-101.0, sensitivity_images=2, fix_steps=(1, 2)),
                            calib=tiny_data["calib"], progress=False, calib_cache=tmp_path / "ranges.json")
    assert set(report.fp32) >= {"AP", "AP50", "AP75"} and report.over_budget
    assert report.sensitive and report.sensitive[0].own_error >= report.sensitive[-1].own_error
    assert [len(t["keep_float"]) for t in report.fix_tries] == [1, 2]
    assert report.fix_patterns and "--keep-float" in report.advice() and "WARNING" in report.advice()
    assert report.fix_patterns[0].startswith(("backbone.", "neck.", "fpn.", "head."))  # module-path weight names
    # the CLI: prints both rows and the delta; --max-ap-drop below the measured drop exits 3
    args = ["quantize", str(tiny_onnx), "--calib", str(tiny_data["calib"]), "-o", str(out), "--no-progress",
            "--val-data", str(tiny_data["root"])]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "FP32" in printed and "INT8" in printed and "delta" in printed and "budget" in printed
    assert main([*args, "--max-ap-drop", str(report.drop - 1.0), "--force"]) == 3
    assert "--max-ap-drop" in capsys.readouterr().err


def test_older_onnxruntime_without_calibration_cache(work: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime whose quantize_static lacks calibration_cache_path: it calibrates itself."""
    import detnet_trt.quantize.calibrate as q
    from detnet_trt.core.errors import MissingDependencyError

    monkeypatch.setattr(q, "ort_has_cache_api", lambda: False)
    out = quantize_onnx(work["fp32"], work["calib"], tmp_path / "old.onnx", progress=False)
    model = onnx.load(str(out))
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) > 4
    with pytest.raises(MissingDependencyError, match="calibration_cache_path"):
        quantize_onnx(work["fp32"], work["calib"], tmp_path / "old2.onnx",
                      QuantizeOptions(calib_cache=tmp_path / "c.json"), progress=False)
