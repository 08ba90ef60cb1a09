"""Calibration sets: a fixed, seeded, versioned list of image files for INT8 calibration.

A set file is plain text: ``#``-prefixed header lines ``# key: value`` (format, source, rule,
seed, counts, skipped images, and the ``sha256`` of the list), then one image path per line,
relative to the set's ``root`` folder (itself stored relative to the set file). The same images
folder, annotations, ``num`` and ``seed`` always give the same list, on any machine.

The rule (``stratified-rarest-first/v1`` with COCO annotations, ``uniform/v1`` without):

1. Candidates are the image files under ``images_dir`` (recursively; with annotations only those
   the annotation file lists and that exist), ordered by ``sha256(f"{seed}:{relative path}")``,
   an order that depends on nothing but the seed and the names.
2. With annotations, categories are visited rarest first (fewest candidate images, then lowest
   category id), round-robin: each visit takes the category's next not-yet-taken image in the
   seeded order, so every category that has images is represented before any gets a second one.
   When every category is exhausted, the remaining candidates (including images without
   annotations) follow in the seeded order.
3. Images are taken in that priority order; one that cannot be decoded (missing, truncated,
   not an image) is skipped, counted and named in the header, and the next one is taken.
   Fewer than ``min_images`` readable images is an error, never a silent short set.
4. The list is written sorted by path; ``sha256`` is the hash of those paths. Each path line
   also carries the image file's own sha256 after a tab, and the header records ``min_images``
   (the minimum the set was made with): :func:`check_calib_images` applies both again at
   quantize time, so an image changed since the set was made is refused as stale, and missing or
   unreadable images are counted and refused below the same minimum. Sets written before these
   existed (paths only, no ``min_images``) get ``min(MIN_IMAGES, count)`` and no content check.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import IncompatibleError, InputError
from ..core.fileio import atomic_write_text, check_writable, sha256_file
from ..core.images import IMAGE_SUFFIXES, image_problem, is_image_file
from ..core.limits import COUNT, COUNT_OR_ZERO, SEED, check_ranges
from ..data.coco import read_coco_json

FORMAT = "detnet_trt.calib_set/1"
RULE_STRATIFIED = "stratified-rarest-first/v1"
RULE_UNIFORM = "uniform/v1"
MIN_IMAGES = 16  # fewer readable images than min(MIN_IMAGES, num) is an error
_MAX_NAMED_SKIPS = 20  # the header names at most this many skipped files


@dataclass
class CalibSet:
    """A calibration set read from its file: absolute image paths, the list hash, the header."""

    files: list[Path]
    sha256: str
    header: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    file_sha256: list[str] = field(default_factory=list)  # per file, "" where the set records none

    @property
    def min_images(self) -> int:
        """The fewest readable images the set may be used with (the rule it was made with)."""
        recorded = self.header.get("min_images", "")
        need = int(recorded) if recorded.isdigit() else MIN_IMAGES
        return max(1, min(need, len(self.files)))

    def __len__(self) -> int:
        return len(self.files)


# --- the rule --------------------------------------------------------------------------------
def _order_key(seed: int, rel: str) -> str:
    return hashlib.sha256(f"{seed}:{rel}".encode()).hexdigest()


def list_hash(rel_paths: Iterable[str]) -> str:
    """The set's identity: sha256 of the sorted relative paths, one per line."""
    return hashlib.sha256("".join(p + "\n" for p in sorted(rel_paths)).encode("utf-8")).hexdigest()


def _scan_images(images_dir: Path) -> list[str]:
    rels = []
    for root, dirs, files in os.walk(images_dir):
        dirs.sort()
        for name in files:
            if is_image_file(name):
                rels.append((Path(root) / name).relative_to(images_dir).as_posix())
    return sorted(rels)


def _load_annotations(ann_file: Path, images_dir: Path, on_disk: set[str]) -> tuple[list[str], dict[int, list[str]]]:
    """Candidate images listed in ``ann_file`` and present on disk, and category id -> images."""
    data = read_coco_json(ann_file)  # a malformed record is one line naming it
    by_base: dict[str, str] = {}
    for rel in on_disk:
        by_base.setdefault(rel.rsplit("/", 1)[-1], rel)
    id_to_rel: dict[int, str] = {}
    for im in data["images"]:
        name = str(im.get("file_name", ""))
        found = name if name in on_disk else by_base.get(name.rsplit("/", 1)[-1])
        if found is not None:
            id_to_rel[int(im["id"])] = found
    per_cat: dict[int, set[str]] = {int(c["id"]): set() for c in data["categories"]}
    for a in data["annotations"]:
        img = id_to_rel.get(int(a["image_id"]))
        if img is not None and not a.get("iscrowd", 0):
            per_cat.setdefault(int(a["category_id"]), set()).add(img)
    return sorted(set(id_to_rel.values())), {c: sorted(s) for c, s in per_cat.items()}


def _priority_order(
    candidates: Sequence[str], per_cat: dict[int, list[str]] | None, seed: int
) -> list[str]:
    """Every candidate once, in the order images are taken (see the module docstring)."""
    key = {rel: _order_key(seed, rel) for rel in candidates}
    seeded = sorted(candidates, key=lambda r: key[r])
    if not per_cat:
        return seeded
    queues = {c: sorted(imgs, key=lambda r: key[r]) for c, imgs in per_cat.items() if imgs}
    cats = sorted(queues, key=lambda c: (len(queues[c]), c))
    pos = dict.fromkeys(cats, 0)
    taken: set[str] = set()
    order: list[str] = []
    active = list(cats)
    while active:
        still = []
        for c in active:
            q = queues[c]
            while pos[c] < len(q) and q[pos[c]] in taken:
                pos[c] += 1
            if pos[c] < len(q):
                rel = q[pos[c]]
                taken.add(rel)
                order.append(rel)
                pos[c] += 1
                still.append(c)
        active = still
    order.extend(r for r in seeded if r not in taken)
    return order



def _format_skipped(skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return "0"
    named = ", ".join(f"{rel} ({why})" for rel, why in skipped[:_MAX_NAMED_SKIPS])
    more = f", and {len(skipped) - _MAX_NAMED_SKIPS} more" if len(skipped) > _MAX_NAMED_SKIPS else ""
    return f"{len(skipped)} unreadable: {named}{more}"


def make_calib_set(
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    annotations: str | os.PathLike[str] | None = None,
    num: int = 512,
    seed: int = 0,
    force: bool = False,
    min_images: int = MIN_IMAGES,
    progress: bool = False,
) -> Path:
    """Choose ``num`` calibration images from ``images_dir`` and write the set file ``out``.

    Stratified over categories when COCO ``annotations`` are given (see the module docstring for
    the rule). Unreadable images are skipped, counted and named in the header; fewer than
    ``min(min_images, num)`` readable images raise :class:`~detnet_trt.core.errors.InputError`.
    """
    images = Path(images_dir)
    if not images.is_dir():
        raise InputError(f"image folder {images} does not exist", "pass the folder holding the images to --images")
    if num < 1:
        raise InputError(f"--num must be at least 1, got {num}")
    check_ranges(("--num", COUNT, num), ("--seed", SEED, seed), ("--min-images", COUNT_OR_ZERO, min_images))
    out_path = check_writable(out, force)
    on_disk = _scan_images(images)
    if not on_disk:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {images}", "check the --images folder")
    candidates, per_cat, ann_desc = _candidates(images, on_disk, annotations)
    order = _priority_order(candidates, per_cat, seed)
    chosen, skipped = _take_readable(images, order, num, progress)
    need = min(min_images, num)
    if len(chosen) < need:
        raise InputError(
            f"only {len(chosen)} readable images in {images} ({_format_skipped(skipped)}); "
            f"a calibration set needs at least {need}",
            "add images, or lower --num",
        )
    header: dict[str, Any] = {
        "format": FORMAT,
        "source": images.as_posix(),
        "root": _root_relative_to(images, out_path),
        "annotations": ann_desc,
        "rule": RULE_UNIFORM if per_cat is None else RULE_STRATIFIED,
        "seed": seed,
        "requested": num,
        "count": len(chosen),
        "candidates": len(candidates),
    }
    if per_cat is not None:
        header["categories covered"] = _coverage(per_cat, chosen)
    header["skipped"] = _format_skipped(skipped)
    header["min_images"] = need
    _write_set(out_path, header, sorted(chosen), images)
    return out_path


# --- the steps of make_calib_set ------------------------------------------------------------
def _candidates(
    images: Path, on_disk: list[str], annotations: str | os.PathLike[str] | None
) -> tuple[list[str], dict[int, list[str]] | None, str]:
    """The candidate images, category id -> images (None without annotations), and the header's
    description of the annotations."""
    if annotations is None:
        return on_disk, None, "none"
    ann = Path(annotations)
    candidates, per_cat = _load_annotations(ann, images, set(on_disk))
    if not candidates:
        raise InputError(
            f"none of the images listed in {ann} is under {images}",
            "pass the image folder that matches the annotation file",
        )
    return candidates, per_cat, f"{ann.name} sha256={sha256_file(ann)}"


def _take_readable(
    images: Path, order: Sequence[str], num: int, progress: bool
) -> tuple[list[str], list[tuple[str, str]]]:
    """The first ``num`` decodable images in ``order``, and the (image, why) of those skipped."""
    chosen: list[str] = []
    skipped: list[tuple[str, str]] = []
    it: Iterable[str] = order
    if progress:
        from tqdm import tqdm

        it = tqdm(order, desc="calib-set: checking images", unit="img", leave=False)
    for rel in it:
        if len(chosen) >= num:
            break
        why = image_problem(images / rel)
        if why is None:
            chosen.append(rel)
        else:
            skipped.append((rel, why))
    return chosen, skipped


def _coverage(per_cat: dict[int, list[str]], chosen: list[str]) -> str:
    """The header's "categories covered": categories with a chosen image, of all (and of those with images)."""
    chosen_set = set(chosen)
    have = [c for c, imgs in per_cat.items() if imgs]
    hit = [c for c in have if chosen_set.intersection(per_cat[c])]
    return f"{len(hit)} of {len(per_cat)} (with images: {len(have)})"


def _root_relative_to(images: Path, out_path: Path) -> str:
    """The images folder as the header's ``root``: relative to the set file's folder when possible."""
    try:
        return Path(os.path.relpath(images.resolve(), out_path.resolve().parent)).as_posix()
    except ValueError:  # another drive on Windows
        return images.resolve().as_posix()


def _write_set(out_path: Path, header: dict[str, Any], rels: list[str], images: Path) -> None:
    """The set file: ``# key: value`` header lines (``sha256`` of the list last), then the sorted
    paths, each with its file's sha256 after a tab."""
    header = dict(header, sha256=list_hash(rels))
    lines = ["# detnet_trt calibration set (detnet-trt calib-set; rule in calibration/README.md)"]
    lines += [f"# {k}: {v}" for k, v in header.items()]
    lines += [f"{rel}\t{sha256_file(images / rel)}" for rel in rels]
    atomic_write_text(out_path, "\n".join(lines) + "\n", force=True)


def read_calib_set(path: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None) -> CalibSet:
    """Read a set file; image paths are resolved against ``images_dir`` if given, else the
    header's ``root`` (relative to the set file). Refuses a list whose hash does not match."""
    p = Path(path)
    if p.is_dir():
        raise InputError(
            f"{p} is a folder, not a calibration set file",
            f"make one with: detnet-trt calib-set --images {p} -o set.txt",
        )
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"calibration set {p} not found", "make one with detnet-trt calib-set") from None
    except UnicodeDecodeError:
        raise InputError(f"{p} is not a text calibration set file", "make one with detnet-trt calib-set") from None
    header: dict[str, str] = {}
    rels: list[str] = []
    hashes: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            key, sep, value = s[1:].strip().partition(": ")
            if sep:
                header[key.strip()] = value.strip()
        else:
            rel, _, digest = s.partition("\t")
            rels.append(rel.strip())
            hashes.append(digest.strip())
    if header.get("format") != FORMAT:
        raise InputError(
            f"{p} is not a detnet_trt calibration set (format {header.get('format')!r}, expected {FORMAT!r})",
            "make one with detnet-trt calib-set",
        )
    if not rels:
        raise InputError(f"calibration set {p} lists no images")
    digest = list_hash(rels)
    if header.get("sha256") != digest:
        raise IncompatibleError(
            f"calibration set {p} was changed after it was made: its list hashes to {digest[:12]}, "
            f"the header says {str(header.get('sha256'))[:12]}",
            "re-make it with detnet-trt calib-set instead of editing it",
        )
    if images_dir is not None:
        root = Path(images_dir)
    else:
        root = Path(header.get("root", "."))
        if not root.is_absolute():
            root = p.resolve().parent / root
    return CalibSet([root / r for r in rels], digest, header, p, hashes)


def check_calib_images(cs: CalibSet, min_images: int = 1) -> list[tuple[Path, str]]:
    """The set's images as they are now: refuses changed ones, counts unreadable ones.

    An image whose bytes no longer hash to the sha256 the set records was changed after the set
    was made: :class:`IncompatibleError` (stale set). Missing or undecodable images are returned
    as ``(path, why)``; fewer readable ones than ``max(cs.min_images, min_images)`` is an
    :class:`InputError`, the rule ``calib-set`` applied when it made the set.
    """
    unreadable: list[tuple[Path, str]] = []
    changed: list[Path] = []
    recorded = cs.file_sha256 if len(cs.file_sha256) == len(cs.files) else [""] * len(cs.files)
    for f, want in zip(cs.files, recorded):
        why = image_problem(f)
        if why is not None:
            unreadable.append((f, why))
        elif want and sha256_file(f) != want:
            changed.append(f)
    where = f"calibration set {cs.path}" if cs.path else "the calibration set"
    if changed:
        names = ", ".join(f.name for f in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise IncompatibleError(
            f"{where} is stale: {len(changed)} of {len(cs.files)} image(s) changed since it was made ({names})",
            f"re-make it: detnet-trt calib-set --images {cs.header.get('source', 'IMAGES')} "
            f"-o {cs.path or 'SET'} --force (with the same --num/--seed/--annotations)",
        )
    need = max(cs.min_images, min_images, 1)
    readable = len(cs.files) - len(unreadable)
    if readable < need:
        names = ", ".join(f"{f.name} ({why})" for f, why in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        raise InputError(
            f"only {readable} of {len(cs.files)} calibration images are readable (need at least {need}); "
            f"missing or unreadable: {names}{more}",
            "check the calibration set's images folder (--calib-images), or re-make the set with detnet-trt calib-set",
        )
    return unreadable
