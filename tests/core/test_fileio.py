"""``core/fileio.py``: outputs never an input, checked before the work, failed writes are errors
(no partial file), written files follow the umask (issue 16)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from detnet_trt.core import fileio
from detnet_trt.core.errors import DetnetError, OutputExistsError
from detnet_trt.core.fileio import (
    OutputError,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    check_not_input,
    check_output_dir,
    check_writable,
    current_umask,
)

root_only = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                               reason="root writes through permission bits")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask():
    """Set the umask for one test, restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_output_error_is_a_detnet_error() -> None:
    assert issubclass(OutputError, DetnetError)


# --- the output is never an input -----------------------------------------------------------------
def test_output_equal_to_input_is_refused_also_through_symlinks_and_relative_paths(tmp_path, monkeypatch) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    link = tmp_path / "link.pt"
    link.symlink_to(model)
    hard = tmp_path / "hard.pt"
    os.link(model, hard)
    monkeypatch.chdir(tmp_path)
    for out in (model, "m.pt", "./sub/../m.pt", link, hard):
        with pytest.raises(OutputError, match="is the input"):
            check_not_input(out, [model])
        with pytest.raises(OutputError, match="is the input"):
            check_writable(out, force=True, inputs=[model])
    assert model.read_bytes() == b"weights"
    check_not_input(tmp_path / "other.pt", [model, None])  # another file is fine


def test_output_folder_holding_or_inside_an_input_is_refused(tmp_path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpg")
    with pytest.raises(OutputError, match="is the input"):
        check_output_dir(photos, [photos])
    with pytest.raises(OutputError, match="holds the input"):
        check_output_dir(photos, [photos / "a.jpg"])
    with pytest.raises(OutputError, match="holds the input"):
        check_output_dir(tmp_path, [photos])
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output_dir(photos / "out", [photos])
    check_output_dir(photos / "out", [photos], allow_inside=True)  # the command reads only photos/*
    link = tmp_path / "plink"
    link.symlink_to(photos)
    with pytest.raises(OutputError, match="is the input"):
        check_output_dir(link, [photos])
    assert (photos / "a.jpg").read_bytes() == b"jpg"


# --- outputs are checked before the work ----------------------------------------------------------
def test_existing_output_needs_force_and_a_folder_is_not_a_file(tmp_path) -> None:
    f = tmp_path / "out.onnx"
    f.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--force"):
        check_writable(f)
    assert check_writable(f, force=True) == f
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path, force=True)
    assert list(tmp_path.iterdir()) == [f]  # the probe file is gone


def test_a_file_where_a_folder_is_needed(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="in the way") as err:
        check_writable(blocker / "sub" / "out.onnx")
    assert "\n" not in str(err.value)
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(blocker)
    with pytest.raises(OutputError):
        atomic_write_text(blocker / "x.txt", "hi")
    assert blocker.read_text() == "x"


@root_only
def test_read_only_folder_is_refused_before_the_work(tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            check_writable(ro / "out.onnx")
        with pytest.raises(OutputError, match="permission denied"):
            check_output_dir(ro / "sub")
    finally:
        ro.chmod(0o755)


def test_full_disk_is_found_by_the_probe_and_by_size(tmp_path, monkeypatch) -> None:
    real = fileio.tempfile.mkstemp

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", full)
    with pytest.raises(OutputError, match="no space left"):
        check_writable(tmp_path / "out.engine")
    monkeypatch.setattr(fileio.tempfile, "mkstemp", real)
    with pytest.raises(OutputError, match="not enough space"):
        check_writable(tmp_path / "out.engine", size=1 << 62)
    check_writable(tmp_path / "out.engine", size=1)


# --- a failed write is an error, and leaves nothing ------------------------------------------------
def test_failed_write_removes_the_partial_file_and_names_the_path(tmp_path, monkeypatch) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(OutputError, match="no space left") as err:
        atomic_write_bytes(out, b"new" * 1000)
    assert str(out) in str(err.value)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_an_oserror_of_the_callers_own_block_is_not_called_a_write_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "o.bin") as f:
        f.write(b"x")
        open(tmp_path / "missing-input.bin", "rb")  # noqa: SIM115 - raises
    assert list(tmp_path.iterdir()) == []


# --- modes follow the umask ------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask, mask) -> None:
    umask(mask)
    assert current_umask() == mask
    p = atomic_write_text(tmp_path / "f.txt", "hi")
    assert _mode(p) == 0o666 & ~mask
    assert fileio.dir_mode() == 0o777 & ~mask


def test_umask_without_proc(tmp_path, umask, monkeypatch) -> None:
    umask(0o027)

    def no_proc(*a, **kw):
        raise OSError(errno.ENOENT, "no /proc")

    monkeypatch.setattr(fileio, "open", no_proc, raising=False)
    assert current_umask() == 0o027
    assert current_umask() == 0o027  # and left unchanged
    monkeypatch.undo()
    assert current_umask() == 0o027
