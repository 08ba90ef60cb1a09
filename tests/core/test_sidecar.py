"""The engine sidecar: written and read back, and the refusal of an engine made for another
TensorRT version or GPU (pure logic, no TensorRT)."""

from __future__ import annotations

import json
import warnings

import pytest

from detnet_trt.core.errors import IncompatibleError, ModelFileError, OutputExistsError
from detnet_trt.core.meta import ModelMeta
from detnet_trt.core.sidecar import EngineInfo, check_compatible, read_sidecar, sidecar_path, write_sidecar


def _info(**changes) -> EngineInfo:
    info = EngineInfo(
        meta=ModelMeta("detnet_tiny", ["a", "b"], (128, 160), precision="int8"),
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability=(8, 7),
        onnx_sha256="ab" * 32,
        calib_sha256="cd" * 32,
        engine_sha256="ef" * 32,
        build={"source": "model.int8.onnx", "batch": [1, 2, 4], "calib": None, "plugins": []},
    )
    for k, v in changes.items():
        setattr(info, k, v)
    return info


def test_sidecar_path() -> None:
    assert sidecar_path("out/model.engine").as_posix() == "out/model.engine.json"


def test_round_trip(tmp_path) -> None:
    engine = tmp_path / "m.engine"
    path = write_sidecar(engine, _info())
    assert path == tmp_path / "m.engine.json"
    back = read_sidecar(engine)
    assert back.meta == _info().meta
    assert back.compute_capability == (8, 7)
    assert back.batch_range == (1, 2, 4)
    assert back.to_dict() == _info().to_dict()
    d = json.loads(path.read_text())
    assert d["format"] == "detnet_trt.engine/1" and d["tensorrt_version"] == "10.3.0"


def test_existing_sidecar_needs_force(tmp_path) -> None:
    write_sidecar(tmp_path / "m.engine", _info())
    with pytest.raises(OutputExistsError, match="--force"):
        write_sidecar(tmp_path / "m.engine", _info(), force=False)


def test_missing_sidecar_is_named(tmp_path) -> None:
    with pytest.raises(ModelFileError, match=r"no metadata sidecar m\.engine\.json"):
        read_sidecar(tmp_path / "m.engine")


@pytest.mark.parametrize("text", ["not json", '{"format": "other/1"}', '{"format": "detnet_trt.engine/1"}'])
def test_malformed_sidecar(tmp_path, text) -> None:
    sidecar_path(tmp_path / "m.engine").write_text(text)
    with pytest.raises(ModelFileError, match="not a detnet-trt engine sidecar"):
        read_sidecar(tmp_path / "m.engine")


def test_matching_platform_passes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_compatible(_info(), "m.engine", tensorrt_version="10.3.0", gpu_name="Orin", compute_capability=(8, 7))


def test_other_tensorrt_version_is_refused_with_both_and_the_command() -> None:
    with pytest.raises(IncompatibleError) as err:
        check_compatible(_info(), "m.engine", tensorrt_version="10.16.1.11", gpu_name="Orin", compute_capability=(8, 7))
    msg = str(err.value)
    assert "built with TensorRT 10.3.0, running TensorRT 10.16.1.11" in msg
    assert "detnet-trt build model.int8.onnx --int8 --batch 1,2,4 -o m.engine --force" in msg


def test_other_gpu_is_refused() -> None:
    with pytest.raises(IncompatibleError, match=r"built for Orin \(compute capability 8\.7\), running on "
                       r"NVIDIA H100 \(compute capability 9\.0\)"):
        check_compatible(_info(), "m.engine", tensorrt_version="10.3.0", gpu_name="NVIDIA H100",
                         compute_capability=(9, 0))


def test_same_architecture_other_name_warns() -> None:
    with pytest.warns(UserWarning, match="built on Orin and runs on Orin NX"):
        check_compatible(_info(), "m.engine", tensorrt_version="10.3.0", gpu_name="Orin NX", compute_capability=(8, 7))


def test_rebuild_command_carries_the_options() -> None:
    info = _info(build={"source": "m.pt", "calib": "set.txt", "batch": [1, 1, 8], "nms": "efficient",
                        "dla_core": 0, "plugins": ["libx.so"]})
    cmd = info.rebuild_command("out dir/m.engine")
    assert cmd == ("detnet-trt build m.pt --int8 --calib set.txt --batch 1,1,8 --nms efficient --dla 0 "
                   "--plugin libx.so -o 'out dir/m.engine' --force")


# --- the recorded engine hash (issue 16, "Integrity is checked where it is recorded") -----------
def test_engine_matching_its_recorded_hash_passes(tmp_path) -> None:
    from detnet_trt.core.fileio import sha256_bytes
    from detnet_trt.core.sidecar import verify_engine, verify_engine_bytes

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan bytes" * 100)
    write_sidecar(engine, _info(engine_sha256=sha256_bytes(engine.read_bytes())))
    assert verify_engine(engine).engine_sha256 == sha256_bytes(engine.read_bytes())
    verify_engine_bytes(engine, engine.read_bytes(), read_sidecar(engine))


def test_flipped_engine_byte_is_refused_with_the_fix(tmp_path) -> None:
    from detnet_trt.core.fileio import sha256_bytes
    from detnet_trt.core.sidecar import verify_engine, verify_engine_bytes

    engine = tmp_path / "m.engine"
    data = bytearray(b"plan bytes" * 100)
    write_sidecar(engine, _info(engine_sha256=sha256_bytes(bytes(data))))
    data[500] ^= 0x10
    engine.write_bytes(bytes(data))
    want = read_sidecar(engine).engine_sha256[:12]
    pattern = rf"m\.engine is corrupt .*: it hashes to sha256 [0-9a-f]{{12}}, the sidecar records {want} \(.*rebuild"
    with pytest.raises(ModelFileError, match=pattern) as err:
        verify_engine(engine)
    assert "\n" not in str(err.value) and "detnet-trt build" in str(err.value)
    with pytest.raises(ModelFileError, match=pattern):
        verify_engine_bytes(engine, bytes(data), read_sidecar(engine))


def test_sidecar_without_an_engine_hash_is_not_checked(tmp_path) -> None:
    from detnet_trt.core.sidecar import verify_engine

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"anything")
    write_sidecar(engine, _info(engine_sha256=""))
    assert verify_engine(engine).engine_sha256 == ""
