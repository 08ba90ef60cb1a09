"""compare(): identical models give zero error and 100 % matched; a perturbed one does not;
detection matching on hand-made cases; ΔAP with a dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detnet_trt.apps.compare import CompareOptions, compare
from detnet_trt.cli import main
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import IncompatibleError, InputError
from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.backends.base import Backend

NAMES = ["circle", "square", "triangle", "star", "ring", "cross"]  # the synthetic dataset's classes


class GridBackend(Backend):
    """A deterministic toy detector: one candidate per cell of a 4x4 grid, score = cell brightness.
    ``noise`` perturbs scores and boxes (a stand-in for a lower-precision build)."""

    name = "grid"

    def __init__(self, noise=0.0, names=NAMES, input_size=(64, 64)):
        super().__init__(ModelMeta("grid", names, input_size, topk=16))
        self.noise = noise

    def _open(self):
        pass

    def _close(self):
        pass

    def _infer(self, images):
        n = images.shape[0]
        h, w = self.meta.input_size
        ch, cw = h // 4, w // 4
        boxes = np.zeros((n, 16, 4), np.float32)
        scores = np.zeros((n, 16), np.float32)
        cls = np.zeros((n, 16), np.int32)
        for i in range(n):
            for k in range(16):
                r, c = divmod(k, 4)
                boxes[i, k] = (c * cw, r * ch, (c + 1) * cw, (r + 1) * ch)
                scores[i, k] = images[i, :, r * ch : (r + 1) * ch, c * cw : (c + 1) * cw].mean() / 255
                cls[i, k] = k % len(self.meta.class_names)
            if self.noise:
                rng = np.random.default_rng(i)
                scores[i] = np.clip(scores[i] + rng.normal(0, self.noise, 16), 0, 1)
                boxes[i] += rng.normal(0, self.noise * 20, (16, 4)).astype(np.float32)
            order = np.argsort(-scores[i], kind="stable")
            boxes[i], scores[i], cls[i] = boxes[i, order], scores[i, order], cls[i, order]
        return {"boxes": boxes, "scores": scores, "class_ids": cls}


def test_identical_models_zero_error_all_matched():
    res = compare(GridBackend(), GridBackend(), CompareOptions(num_images=3, progress=False), PostprocessConfig(conf=0.2))
    assert set(res.outputs) == {"boxes", "scores", "class_ids", "boxes (aligned rows)", "scores (aligned rows)"}
    assert res.outputs["scores (aligned rows)"]["unpaired_rows"] == 0
    for d in res.outputs.values():
        assert d["max_abs"] == 0 and d["mean_abs"] == 0 and d["max_rel"] == 0
    assert res.outputs["class_ids"]["mismatch"] == 0
    m = res.matching
    assert m["a_dets"] > 0 and m["a_dets"] == m["b_dets"] == m["matched"]
    assert m["matched_a"] == m["matched_b"] == 1.0 and m["mean_iou"] == pytest.approx(1.0)
    assert res.num_images == 3 and "synthetic" in res.source
    assert "| scores |" in res.table()


def test_perturbed_model_shows_errors():
    res = compare(GridBackend(), GridBackend(noise=0.05), CompareOptions(num_images=3, progress=False), PostprocessConfig(conf=0.2))
    assert res.outputs["scores"]["max_abs"] > 0.01
    assert res.outputs["boxes (aligned rows)"]["mean_abs"] > 0
    assert 0 < res.outputs["scores"]["mean_rel"] <= 1
    assert res.matching["matched_a"] < 1.0 or res.matching["mean_iou"] < 1.0


def test_different_classes_refused():
    with pytest.raises(IncompatibleError, match="different classes"):
        compare(GridBackend(), GridBackend(names=["a", "b"]), CompareOptions(num_images=1, progress=False))


def test_different_input_sizes_compare_detections_only():
    res = compare(GridBackend(), GridBackend(input_size=(96, 96)), CompareOptions(num_images=2, progress=False),
                  PostprocessConfig(conf=0.2))
    assert res.outputs == {} and any("input sizes differ" in n for n in res.notes)
    assert res.matching["a_dets"] > 0


def test_with_dataset_identical_ap(tmp_path):
    from detnet_trt.data.synth import make_synth_dataset

    root = make_synth_dataset(tmp_path / "d", images=4, size=(64, 64), progress=False)
    data = (root / "annotations/instances_val.json", root / "images/val")
    res = compare(GridBackend(), GridBackend(), CompareOptions(data=data, batch=2, progress=False))
    assert res.ap is not None and res.num_images == 1
    assert all(v == 0 for v in res.ap["delta"].values())
    assert res.ap["a"] == res.ap["b"]
    assert "| AP |" in res.table()


def test_cli_compare_real_onnx(tiny_onnx, tmp_path, capsys):
    """The tiny ONNX model against itself through the CLI: zero error, every detection matched."""
    out = tmp_path / "cmp.json"
    rc = main(["compare", str(tiny_onnx), str(tiny_onnx), "--num", "2", "--conf", "0.0", "--json", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    assert res["outputs"]["scores"]["max_abs"] == 0.0 and res["outputs"]["boxes"]["max_abs"] == 0.0
    assert res["matching"]["a_dets"] > 0 and res["matching"]["matched_a"] == 1.0


class SwappedGridBackend(GridBackend):
    """GridBackend with the first two candidates swapped: as if two nearly tied scores traded places."""

    def _infer(self, images):
        out = super()._infer(images)
        for k in out:
            out[k][:, [0, 1]] = out[k][:, [1, 0]]
        out["scores"][:, [0, 1]] = out["scores"][:, [1, 0]]  # keep the scores sorted: only boxes/classes move
        return out


def test_aligned_rows_ignore_reordering():
    res = compare(GridBackend(), SwappedGridBackend(), CompareOptions(num_images=2, progress=False), PostprocessConfig(conf=0.0))
    assert res.outputs["boxes"]["max_abs"] > 0
    assert res.outputs["boxes (aligned rows)"]["max_abs"] == 0


def test_compare_options_name_the_flag():
    with pytest.raises(InputError, match="--batch"):
        CompareOptions(batch=0)
