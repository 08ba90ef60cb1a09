"""Image files: the one list of suffixes the package reads, folder listing, and the one decoder.

Every reader of image files (calibration sets, COCO datasets, ``infer``, the camera loop's image
folders, ``compare``, the Triton client) uses these, so they agree on what an image file is.
OpenCV is imported when an image is decoded, not when this module is.

**A corrupt image is handled the same way everywhere** (``infer``, ``eval``, ``compare``,
``client``, ``calib-set``, ``quantize``): it is named (with why) when met, skipped, the others still
run, the count is told at the end (:class:`SkippedImages`), and the command exits with
:data:`EXIT_SKIPPED_IMAGES` (1) once its work is done. None readable at all is an error (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

#: Suffixes (lower case) of the files OpenCV decodes that the package treats as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an image by its suffix (hidden files, e.g. ``._x.jpg``, do not)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and below it with ``recursive``), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist", "pass an existing folder of images")
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if is_image_file(p) and p.is_file())


def decode_image(path: str | os.PathLike[str]) -> tuple[Any, str | None]:
    """``(image, None)``, or ``(None, why)`` when ``path`` does not decode as a colour image."""
    import cv2
    import numpy as np

    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)  # not cv2.imread: it fails on non-ASCII paths on Windows
    except OSError as err:
        return None, f"cannot open ({err.strerror or err})"
    if data.size == 0:
        return None, "empty file"
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)  # grey and 16-bit images come back as 8-bit BGR
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None, "cannot decode"
    return img, None


def image_problem(path: str | os.PathLike[str]) -> str | None:
    """``None`` when ``path`` decodes as a colour image, else why not (a short phrase)."""
    return decode_image(path)[1]


def read_image(path: str | os.PathLike[str]) -> Any:
    """The image at ``path`` as an H x W x 3 BGR uint8 array; :class:`InputError` naming the file
    and the reason when it cannot be read."""
    img, problem = decode_image(path)
    if problem is not None:
        raise InputError(f"cannot read image {path}: {problem}", "check that the file exists and is an image")
    return img


#: The exit code of a command that did its work but skipped images it could not read (each named
#: on stderr, the count at the end). 2 is an error before or instead of the work (nothing done, or
#: nothing readable); 3 is ``quantize --max-ap-drop``'s accuracy gate.
EXIT_SKIPPED_IMAGES = 1


@dataclass
class SkippedImages:
    """The images a run could not read, ``(path, why)`` in the order met; ``on_skip(path, why)`` is
    called for each as it is met (the CLI prints a line)."""

    items: list[tuple[str, str]] = field(default_factory=list)
    on_skip: Callable[[str, str], None] | None = None

    def add(self, path: str | os.PathLike[str], why: str) -> None:
        self.items.append((str(path), why))
        if self.on_skip is not None:
            self.on_skip(str(path), why)

    def read(self, path: str | os.PathLike[str]) -> Any:
        """The image at ``path`` (as :func:`read_image`), or ``None`` after recording why not."""
        img, problem = decode_image(path)
        if problem is not None:
            self.add(path, problem)
        return img

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, shown: int = 10) -> str:
        """``"2 image(s) could not be read and were skipped: a.jpg (empty file), b.png (cannot decode)"``."""
        named = ", ".join(f"{p} ({why})" for p, why in self.items[:shown])
        more = f", and {len(self.items) - shown} more" if len(self.items) > shown else ""
        return f"{len(self.items)} image(s) could not be read and were skipped: {named}{more}"

    def none_readable(self, what: str) -> InputError:
        """The error when every image of ``what`` was skipped (nothing to do)."""
        return InputError(f"no image of {what} could be read ({self.summary(3)})",
                          "check that the files are images (jpg, png, ...) and not damaged")
