"""``build --nms efficient`` on a model whose NMS is in its graph (the two-stage detector, an
in-graph-NMS export) is refused in one line, before any export or calibration."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from fpn_checkpoint import their_model

from detnet_trt.cli import main
from detnet_trt.core.onnx_meta import meta_of, seal, set_meta
from detnet_trt.export.onnx import export_onnx
from detnet_trt.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def two_stage_ckpt(tmp_path_factory) -> Path:
    model = their_model()
    return save_checkpoint(model, tmp_path_factory.mktemp("fpn_ckpt") / "fpn.pt")


def _refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_two_stage_checkpoint_is_refused_before_any_work(two_stage_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "fpn.engine"
    calib = tmp_path / "set.txt"  # never read: the refusal comes first
    line = _refused(capsys, ["build", str(two_stage_ckpt), "--int8", "--calib", str(calib), "--nms", "efficient",
                             "-o", str(out)])
    assert "two-stage detector detnet59_fpn" in line and "NMS is in its graph already" in line
    assert "without --nms efficient" in line
    assert list(tmp_path.iterdir()) == []  # no export, no Q/DQ ONNX, no engine


def test_two_stage_onnx_and_in_graph_nms_onnx_are_refused(tiny_checkpoint, tiny_onnx, tmp_path, capsys) -> None:
    proto = onnx.load(str(tiny_onnx))
    meta = meta_of(proto)
    set_meta(proto, meta.with_updates(nms="onnx", extra={**meta.extra, "detector": "two_stage"}))
    seal(proto)
    two = tmp_path / "in" / "two.onnx"
    two.parent.mkdir()
    onnx.save(proto, str(two))
    line = _refused(capsys, ["build", str(two), "--fp16", "--nms", "efficient", "-o", str(tmp_path / "a.engine")])
    assert "two.onnx is the two-stage detector" in line and "without --nms efficient" in line
    graph = export_onnx(tiny_checkpoint, tmp_path / "in" / "graph_nms.onnx", nms="onnx", verify=False)
    line = _refused(capsys, ["build", str(graph), "--fp16", "--nms", "efficient", "-o", str(tmp_path / "b.engine")])
    assert "has its NMS in the graph already (nms='onnx')" in line and "--nms host" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
