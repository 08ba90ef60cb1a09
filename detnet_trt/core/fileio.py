"""Atomic file writes, output checks and content hashes.

Outputs are written to a temporary file in the destination folder and renamed into place, so an
interrupted export, calibration or engine build never leaves a half-written file that a later
run would trust. Before the work runs, :func:`check_writable` (a file) and :func:`check_output_dir`
(a folder) make sure the output can be written at all: an existing file is not replaced without
``force``, an output is never one of the inputs (:func:`check_not_input`), the folder exists or is
created, is a folder, and takes a real file (and ``size`` bytes, when known). Every problem is an
:class:`OutputError` (or :class:`~detnet_trt.core.errors.OutputExistsError`) saying what to do.
A written file gets the permissions the user's umask gives (``0o666 & ~umask``), like any file
the shell creates, not the ``0600`` of a temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from .errors import OutputError, OutputExistsError

PathLike = str | os.PathLike[str]


# --- the umask ------------------------------------------------------------------------------------
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: ``/proc/self/status``);
    elsewhere set and restored under a lock (``os.umask`` has no read-only form)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


def file_mode() -> int:
    """The mode a new file gets from ``open()``: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode a new folder gets from ``mkdir()``: ``0o777 & ~umask``."""
    return 0o777 & ~current_umask()


# --- output checks --------------------------------------------------------------------------------
def _os_reason(err: OSError) -> tuple[str, str]:
    """(what went wrong, how to fix it) for an OSError on an output."""
    code = err.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "no space left on the device", "free some space or choose an output on another disk"
    if code == errno.EROFS:
        return "the file system is read-only", "choose an output on a writable file system"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied", "choose a folder you can write to, or fix its permissions"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return "a file is in the way where a folder is needed", "remove that file or choose another output"
    if code == errno.EISDIR:
        return "it is a folder", "name a file, not a folder"
    return err.strerror or str(err), "choose another output location"


def output_error(path: PathLike, err: OSError, doing: str = "cannot write") -> OutputError:
    """The one-line :class:`OutputError` for ``err`` raised while writing ``path``."""
    why, fix = _os_reason(err)
    return OutputError(f"{doing} {path}: {why}", fix)


def _resolve(p: PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts, case-insensitive file systems
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    """Whether resolved ``child`` is ``parent`` or below it."""
    return child == parent or parent in child.parents


def check_not_input(out: PathLike, inputs: Iterable[PathLike | None], *, allow_inside: bool = False) -> Path:
    """Refuse an output that is one of ``inputs``, lies inside an input folder, or (a folder) holds
    an input; compared after resolving symlinks and relative paths (and by inode when both exist).

    ``allow_inside``: an output inside an input folder is fine (the command reads that folder's
    files but never writes there, e.g. ``infer photos/ --out photos/annotated``).
    """
    o = _resolve(out)
    for item in inputs:
        if item is None:
            continue
        i = _resolve(item)
        if _same(o, i):
            raise OutputError(f"output {out} is the input {item}; writing it would destroy the input",
                              "choose another output path")
        if _inside(i, o) or (o.exists() and o.is_dir() and any(_same(p, i) for p in (i, *i.parents) if _inside(p, o))):
            raise OutputError(f"output {out} holds the input {item}; writing it could destroy the input",
                              "choose an output outside the inputs' folders")
        if not allow_inside and i.is_dir() and _inside(o, i):
            raise OutputError(f"output {out} is inside the input folder {item}",
                              "choose an output outside the inputs' folders")
    return Path(out)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file in the way
        raise OutputError(f"cannot create folder {folder}: a file of that name (or above it) is in the way",
                          "remove that file or choose another output") from None
    except OSError as err:
        raise output_error(folder, err, "cannot create folder") from None
    if not folder.is_dir():
        raise OutputError(f"{folder} is not a folder", "remove that file or choose another output")


def probe_folder(folder: PathLike, size: int | None = None) -> None:
    """Write (and remove) a real temporary file in ``folder``: permission bits, ACLs, read-only
    mounts and full disks all show here, unlike ``os.access``. With ``size``, also check that the
    file system has that many bytes free."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".detnet-probe.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise output_error(folder, err, "cannot write in folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise output_error(folder, err, "cannot write in folder") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if size is not None:
        free = shutil.disk_usage(folder).free
        if free < size:
            raise OutputError(f"not enough space in {folder}: {size / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free",
                              "free some space or choose an output on another disk")


def check_writable(
    path: PathLike, force: bool = False, inputs: Iterable[PathLike | None] = (), size: int | None = None
) -> Path:
    """Check, before the work, that file ``path`` can be written; returns it as a Path.

    Refuses (:class:`OutputExistsError`) an existing ``path`` unless ``force``, and
    (:class:`OutputError`) a ``path`` that is one of ``inputs``, is a folder, or whose folder cannot
    be created or written (tested with a real file) or lacks ``size`` free bytes. Creates the folder.
    """
    p = _check_file_target(path, force, inputs)
    probe_folder(p.parent, size)
    return p


def _check_file_target(path: PathLike, force: bool, inputs: Iterable[PathLike | None]) -> Path:
    p = Path(path)
    check_not_input(p, inputs)
    if p.is_dir():
        raise OutputError(f"output {p} is a folder", "name a file, not a folder")
    if p.exists() and not force:
        raise OutputExistsError(f"{p} already exists", "pass --force to overwrite it")
    _mkdir(p.parent)
    return p


def check_output_dir(path: PathLike, inputs: Iterable[PathLike | None] = (), *, create: bool = True,
                     allow_inside: bool = False, size: int | None = None) -> Path:
    """Check, before the work, that folder ``path`` can take outputs: not one of ``inputs`` (see
    :func:`check_not_input`), a folder (created with ``create``, else its parent must be writable),
    writable (tested with a real file), ``size`` bytes free when given."""
    p = Path(path)
    check_not_input(p, inputs, allow_inside=allow_inside)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output folder {p} is a file", "name a folder, or remove the file")
    if create:
        _mkdir(p)
        probe_folder(p, size)
    else:
        parent = p.parent if not p.exists() else p
        _mkdir(parent)
        probe_folder(parent, size)
    return p


# --- atomic writes --------------------------------------------------------------------------------
def _is_write_error(err: OSError, tmp: str) -> bool:
    """Whether ``err`` came from writing the temporary file (no file name, or that one), not from
    something else the caller's block did (reading an input, say)."""
    return err.filename is None or os.fspath(err.filename) == tmp


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", force: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path`` (mode
    ``0o666 & ~umask``).

    On any exception the temporary file is removed and ``path`` is left untouched; a failed
    write (full disk, I/O error, ...) is an :class:`OutputError` naming ``path``.
    """
    p = _check_file_target(path, force, ())
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as err:
        raise output_error(p, err) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, p)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and _is_write_error(err, tmp):
            raise output_error(p, err) from err
        raise


def atomic_write_bytes(path: PathLike, data: bytes, force: bool = True) -> Path:
    with atomic_open(path, "wb", force) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, force: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), force)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
