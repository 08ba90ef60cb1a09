"""Detect objects in image files with any backend: annotated images plus a JSON of detections.

``run_inference(model, ["a.jpg", "photos/"], "out/", InferOptions(batch=4), PostprocessConfig(conf=0.4))``
writes ``out/a.jpg`` (boxes, class names,
scores drawn on the image), one such file per input, and ``out/detections.json``::

    {"model": ..., "backend": {...}, "conf": ..., "iou": ..., "max_det": ...,
     "images": [{"file": "a.jpg", "output": "a.jpg", "width": W, "height": H,
                 "detections": [{"box": [x1, y1, x2, y2], "score": s, "class_id": c,
                                 "class_name": "..."}, ...]}, ...],
     "failed": [{"file": "broken.jpg", "error": "..."}]}

Boxes are xyxy in the original image's pixels. An image that cannot be read is reported (in
``failed`` and through ``on_error``) and skipped; the others still run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..core.config import PostprocessConfig
from ..core.errors import InputError, OutputExistsError
from ..core.fileio import OutputError, atomic_write_bytes, atomic_write_text, check_output_dir
from ..core.images import IMAGE_SUFFIXES, decode_image, list_images
from ..core.images import read_image as read_image  # re-exported: tests and API users import it from here
from ..core.limits import BATCH, check_ranges
from ..runtime.backends import Backend, load_backend
from ..runtime.detector import Detector
from ..runtime.postprocess import Detections
from .visualize import draw_detections

# inputs in these formats are written back as .jpg
_REWRITE_AS_JPG = (".pgm", ".ppm", ".jp2")
JSON_NAME = "detections.json"


@dataclass
class InferResult:
    """What :func:`run_inference` did: files written, per-image detections, failures."""

    out_dir: Path
    json_path: Path
    outputs: list[Path] = field(default_factory=list)
    detections: dict[str, Detections] = field(default_factory=dict)  # input path -> detections
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input path, reason)


def collect_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named directly (any suffix) plus the image files directly inside named folders
    (sorted). A path that does not exist is kept, so that it is reported as unreadable."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(list_images(p))
        else:
            files.append(p)
    return files



def _output_names(files: Sequence[Path]) -> list[str]:
    """One output file name per input: the input's name, de-duplicated with ``_1``, ``_2``..."""
    used: set[str] = {JSON_NAME}
    names = []
    for f in files:
        stem, suffix = f.stem, f.suffix.lower()
        if suffix not in IMAGE_SUFFIXES or suffix in _REWRITE_AS_JPG:
            suffix = ".jpg"
        name, i = f"{stem}{suffix}", 0
        while name in used:
            i += 1
            name = f"{stem}_{i}{suffix}"
        used.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class InferOptions:
    """How :func:`run_inference` runs: images per inference call (``--batch``), overwrite existing
    outputs (``--force``), progress bar (off with ``--quiet``)."""

    batch: int = 1
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"--batch {self.batch}: images per inference call must be at least 1", "pass --batch >= 1")
        check_ranges(("--batch", BATCH, self.batch))


def _plan(inputs: Sequence[str | os.PathLike[str]], out: Path, force: bool) -> tuple[list[Path], list[str]]:
    """The input files and their output names, every output checked before anything runs: the
    ``--out`` folder is not an input folder and holds no input (it may lie inside an input folder:
    only the folder's own files are read), it is a folder (created) that takes a real file, and no
    output file exists unless ``force``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", "name a folder for the annotated images")
    files = collect_images(inputs)
    if not files:
        raise InputError(f"no images found in {[str(i) for i in inputs]}",
                         f"name image files or folders holding {', '.join(sorted(IMAGE_SUFFIXES))} files")
    try:
        check_output_dir(out, inputs, allow_inside=True)
    except OutputError as err:
        raise OutputError(f"--out: {err.message}", err.hint) from None
    names = _output_names(files)
    for name in [*names, JSON_NAME]:
        target = out / name
        if target.is_dir():
            raise OutputError(f"output {target} is a folder", "remove it or choose another --out")
        if target.exists() and not force:
            raise OutputExistsError(f"{target} already exists", "pass --force to overwrite it")
    return files, names


class _Writer:
    """Detects in batches of pending images, writes each annotated image and keeps its record."""

    def __init__(self, detector: Detector, result: InferResult, fail: Callable[[Path, str], None]) -> None:
        self.detector, self.result, self.fail = detector, result, fail
        self.pending: list[tuple[Path, str, np.ndarray]] = []
        self.records: list[dict[str, Any]] = []

    def add(self, path: Path, name: str, img: np.ndarray) -> None:
        self.pending.append((path, name, img))
        if len(self.pending) == self.detector.letterboxer.max_batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        names = self.detector.class_names
        dets = self.detector([img for _, _, img in self.pending])
        for (path, name, img), det in zip(self.pending, dets):
            annotated = draw_detections(img, det, names)
            ok, enc = cv2.imencode(Path(name).suffix, annotated)
            if not ok:  # pragma: no cover - every suffix kept by _output_names encodes
                self.fail(path, f"cannot encode {name}")
                continue
            self.result.outputs.append(atomic_write_bytes(self.result.out_dir / name, enc.tobytes(), force=True))
            self.result.detections[str(path)] = det
            h, w = img.shape[:2]
            self.records.append({"file": str(path), "output": name, "width": w, "height": h,
                                 "detections": det.to_list(names)})
        self.pending.clear()


def run_inference(
    model: str | os.PathLike[str] | Backend,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: InferOptions = InferOptions(),
    post: PostprocessConfig = PostprocessConfig(),
    *,
    backend_kwargs: dict[str, Any] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> InferResult:
    """Run ``model`` (a model file for :func:`load_backend`, or a Backend) on image files.

    Raises :class:`InputError` when no input names an image at all, and, before anything runs,
    :class:`~detnet_trt.core.errors.OutputExistsError` when an output file exists and
    ``options.force`` is false, :class:`~detnet_trt.core.fileio.OutputError` when ``out_dir`` is
    (or holds) an input or cannot be written. A write that fails later (a full disk) is an
    ``OutputError`` too.
    """
    out = Path(out_dir)
    backend = model if isinstance(model, Backend) else load_backend(model, **(backend_kwargs or {}))
    files, names = _plan(inputs, out, options.force)
    result = InferResult(out_dir=out, json_path=out / JSON_NAME)

    def fail(path: Path, reason: str) -> None:
        result.failed.append((str(path), reason))
        if on_error is not None:
            on_error(path, reason)

    from tqdm import tqdm

    with backend:
        writer = _Writer(Detector(backend, post, max_batch=options.batch), result, fail)
        for path, name in tqdm(list(zip(files, names)), desc="infer", unit="img", disable=not options.progress):
            img, problem = decode_image(path)  # core.images: the one decoder; skipped, named, counted
            if problem is not None:
                fail(path, problem)
                continue
            writer.add(path, name, img)
        writer.flush()
        doc = {
            "model": str(getattr(backend, "path", None) or backend.meta.model),
            "backend": backend.describe(),
            "class_names": backend.meta.class_names,
            "conf": post.conf,
            "iou": post.iou,
            "max_det": post.max_det,
            "images": writer.records,
            "failed": [{"file": f, "error": e} for f, e in result.failed],
        }
    atomic_write_text(result.json_path, json.dumps(doc, indent=1) + "\n", force=True)
    return result
