"""``detnet-trt inspect``: an inspector JSON file on CPU; an engine through TensorRTBackend on the
fake GPU (tests/trt_fakes.py); the errors, each one line with exit 2."""

from __future__ import annotations

import json

import pytest
from inspector_fixtures import DETAILED, NAMES_ONLY, text
from trt_fakes import install, write_engine

from detnet_trt.cli import main
from detnet_trt.trt import compat


def test_inspect_an_inspector_json_file(tmp_path, capsys) -> None:
    src = tmp_path / "layers.json"
    src.write_text(text(DETAILED))
    out = tmp_path / "report.json"
    assert main(["inspect", str(src), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7 layers" in printed and "backbone.stem.conv + backbone.stem.relu" in printed
    assert "device: GPU 6, DLA 1" in printed
    record = json.loads(out.read_text())
    assert record["counts"]["precision"]["INT8"] == 1 and len(record["layers"]) == 7
    assert main(["inspect", str(src), "--json", str(out)]) == 2  # an existing output needs --force
    assert "--force" in capsys.readouterr().err
    assert main(["inspect", str(src), "--json", str(out), "--force"]) == 0


def test_names_only_engine_warns(tmp_path, capsys) -> None:
    src = tmp_path / "layers.json"
    src.write_text(text(NAMES_ONLY))
    assert main(["inspect", str(src)]) == 0
    err = capsys.readouterr().err
    assert "layer names only" in err and "DETAILED" in err


def test_inspect_errors(tmp_path, capsys) -> None:
    assert main(["inspect", str(tmp_path / "none.engine")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json: engine inspector output is not JSON" in err
    sidecar = write_engine(tmp_path).with_name("m.engine.json")  # the sidecar, passed by mistake
    assert main(["inspect", str(sidecar)]) == 2
    err = capsys.readouterr().err
    assert "no 'Layers' list" in err and "not the engine's .json sidecar" in err


@pytest.mark.skipif(compat.have_tensorrt(), reason="TensorRT is installed")
def test_inspect_an_engine_without_tensorrt(tmp_path, capsys) -> None:
    assert main(["inspect", str(write_engine(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TensorRT is not installed" in err


def test_inspect_an_engine_on_the_fake_gpu(tmp_path, capsys, monkeypatch) -> None:
    gpu = install(monkeypatch)
    gpu.inspector_json = text(DETAILED)
    engine = write_engine(tmp_path)
    assert main(["inspect", str(engine)]) == 0
    assert gpu.inspected_shapes == [(2, 3, 16, 16)]  # the profile's optimum batch (1, 2, 4) set first
    printed = capsys.readouterr().out
    assert "TensorRT 10.3.0 on FakeGPU: 7 layers" in printed and "DLA" in printed
    raw = tmp_path / "layer_info.json"
    assert main(["inspect", str(engine), "--batch", "4", "--layer-info", str(raw)]) == 0
    assert gpu.inspected_shapes[-1] == (4, 3, 16, 16)
    assert raw.read_text() == text(DETAILED)  # TensorRT's JSON as given, for trt-engine-explorer
    capsys.readouterr()
    assert main(["inspect", str(raw)]) == 0  # and read back without TensorRT
    assert "7 layers" in capsys.readouterr().out
    assert main(["inspect", str(engine), "--batch", "8"]) == 2
    assert "outside this engine's 1 to 4" in capsys.readouterr().err
    assert gpu.memory == {} and gpu.retained == 0  # closed after each
