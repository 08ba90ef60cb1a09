"""The exported ONNX records the sha256 of its own graph; every reader verifies it (issue 16,
"Integrity is checked where it is recorded"): a flipped bit in a weight parses and runs, so
before this a damaged file gave wrong detections with exit 0."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from corrupt import flip_middle_byte, flip_tensor_byte, flip_weight_byte

from detnet_trt.core.errors import ModelFileError
from detnet_trt.core.onnx_meta import CONTENT_KEY, content_sha256, read_onnx_meta, verify_content
from detnet_trt.export.onnx import export_onnx
from detnet_trt.runtime.backends.ort import OnnxRuntimeBackend


def test_export_records_the_graph_hash(tiny_onnx) -> None:
    model = onnx.load(str(tiny_onnx))
    recorded = {p.key: p.value for p in model.metadata_props}[CONTENT_KEY]
    assert recorded.strip('"') == content_sha256(model)
    verify_content(model, tiny_onnx)


def test_flipped_weight_is_refused_by_every_reader(tiny_onnx, tmp_path: Path) -> None:
    bad = flip_weight_byte(Path(tiny_onnx), tmp_path / "flipped.onnx")
    onnx.load(str(bad))  # still parses: only the hash tells
    pattern = r"flipped\.onnx is corrupt: its graph hashes to sha256 [0-9a-f]{12}, recorded [0-9a-f]{12} \(.*re-export"
    with pytest.raises(ModelFileError, match=pattern):
        read_onnx_meta(bad)
    with pytest.raises(ModelFileError, match=pattern):
        OnnxRuntimeBackend(bad)


def test_onnx_without_the_hash_is_not_checked(tiny_onnx, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != CONTENT_KEY]
    del model.metadata_props[:]
    for k, v in keep:
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(tmp_path / "old.onnx"))
    assert read_onnx_meta(tmp_path / "old.onnx").model == read_onnx_meta(tiny_onnx).model


def test_export_refuses_a_corrupt_checkpoint(tiny_checkpoint, tmp_path: Path) -> None:
    bad = flip_tensor_byte(Path(tiny_checkpoint), tmp_path / "flipped.pt")
    with pytest.raises(ModelFileError, match=r"flipped\.pt is corrupt"):
        export_onnx(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_external_data_is_verified_too(tiny_onnx, tmp_path: Path) -> None:
    onnx.save_model(onnx.load(str(tiny_onnx)), str(tmp_path / "m.onnx"), save_as_external_data=True,
                    location="m.weights")
    assert read_onnx_meta(tmp_path / "m.onnx").model == read_onnx_meta(tiny_onnx).model
    flip_middle_byte(tmp_path / "m.weights")
    with pytest.raises(ModelFileError, match=r"m\.onnx is corrupt"):
        read_onnx_meta(tmp_path / "m.onnx")


def test_efficient_nms_and_fp16_files_are_sealed(tiny_onnx, tmp_path) -> None:
    """The ONNX files the build chain derives carry their own content hash, and it verifies."""
    import onnx

    from detnet_trt.build.fp16 import convert_to_fp16
    from detnet_trt.core.onnx_meta import CONTENT_KEY, props_of, read_onnx_meta
    from detnet_trt.export.efficient_nms import add_efficient_nms

    for path in (add_efficient_nms(tiny_onnx, tmp_path / "m.nms.onnx"), convert_to_fp16(tiny_onnx, tmp_path / "m.fp16.onnx")):
        assert CONTENT_KEY in props_of(onnx.load(str(path), load_external_data=False)), path
        read_onnx_meta(path)  # verifies the hash
