"""The timing cache is written after the engine, and failing to write it is a warning, never the
loss of a finished build."""

from __future__ import annotations

from pathlib import Path

import pytest

from detnet_trt.build.builder import save_timing_cache


class _Cache:
    def serialize(self) -> bytes:
        return b"timing-cache-bytes"


class _Config:
    def __init__(self, cache: _Cache | None) -> None:
        self._cache = cache

    def get_timing_cache(self) -> _Cache | None:
        return self._cache


def test_saves_the_cache(tmp_path) -> None:
    path = tmp_path / "sub" / "trt.cache"
    assert save_timing_cache(_Config(_Cache()), path) is True  # type: ignore[arg-type]
    assert path.read_bytes() == b"timing-cache-bytes"


def test_unwritable_cache_is_a_warning(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    path = blocker / "trt.cache"
    assert save_timing_cache(_Config(_Cache()), path) is False  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "warning: timing cache not saved" in err and str(path) in err and "the engine is fine" in err
    assert blocker.read_text().startswith("a file")


def test_no_cache_to_save(tmp_path) -> None:
    assert save_timing_cache(_Config(None), tmp_path / "c") is False  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()


@pytest.mark.gpu
def test_build_survives_an_unwritable_timing_cache(tiny_onnx, tmp_path, capsys) -> None:
    """On a GPU with TensorRT: the engine and its sidecar are written, the cache failure is a warning."""
    from detnet_trt.build.chain import build_engine
    from detnet_trt.build.options import BuildOptions
    from detnet_trt.core.sidecar import read_sidecar

    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = build_engine(tiny_onnx, tmp_path / "m.engine",
                       BuildOptions(precision="fp16", timing_cache=blocker / "trt.cache", progress=False))
    assert Path(out).is_file() and read_sidecar(out).engine_sha256
    assert "warning: timing cache not saved" in capsys.readouterr().err
