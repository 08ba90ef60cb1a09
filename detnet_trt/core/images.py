"""Image files: the one list of suffixes the package reads, folder listing, and the one decoder.

Every reader of image files (calibration sets, COCO datasets, ``infer``, the camera loop's image
folders, ``compare``, the Triton client) uses these, so they agree on what an image file is.
OpenCV is imported when an image is decoded, not when this module is.
"""

from __future__ import annotations

import os
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
