"""Atomic file writes and content hashes.

Outputs are written to a temporary file in the destination folder and renamed into place, so an
interrupted export, calibration or engine build never leaves a half-written file that a later
run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import OutputExistsError


def check_writable(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Refuse to overwrite an existing ``path`` unless ``force``; create the parent folder."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"{p} already exists", "pass --force to overwrite it")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", force: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    p = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, force: bool = True) -> Path:
    with atomic_open(path, "wb", force) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, force: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), force)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
