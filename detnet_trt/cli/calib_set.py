"""``detnet-trt calib-set``: write a seeded, stratified list of calibration images."""

from __future__ import annotations

import argparse
import sys

from ..core.images import EXIT_SKIPPED_IMAGES
from ..core.limits import COUNT, COUNT_OR_ZERO, SEED
from ._options import number


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calib-set",
        help="choose a seeded, stratified set of INT8 calibration images",
        description="Write a calibration set file: a header (source, rule, seed, counts, skipped images, sha256) "
        "and one image path per line. With COCO --annotations the choice is stratified over categories (rarest "
        "first, so rare classes are present). The same inputs always give the same list; unreadable images are "
        "skipped and named. The rule is described in calibration/README.md.",
    )
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--annotations", help="COCO instances JSON for these images (enables category stratification)")
    p.add_argument("--num", type=number(COUNT), default=512, help="number of images (default 512)")
    p.add_argument("--seed", type=number(SEED), default=0, help="seed of the choice (default 0)")
    p.add_argument("--min-images", type=number(COUNT_OR_ZERO), default=None, help="fail if fewer readable images remain (default 16)")
    p.add_argument("-o", "--output", required=True, help="set file to write, e.g. calibration/coco_train_512.txt")
    p.add_argument("--force", action="store_true", help="overwrite an existing set file")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..quantize.calibset import MIN_IMAGES, make_calib_set, read_calib_set

    out = make_calib_set(
        args.images,
        args.output,
        annotations=args.annotations,
        num=args.num,
        seed=args.seed,
        force=args.force,
        min_images=MIN_IMAGES if args.min_images is None else args.min_images,
        progress=True,
    )
    cs = read_calib_set(out)
    h = cs.header
    cats = f", categories covered {h['categories covered']}" if "categories covered" in h else ""
    print(f"wrote {out}: {len(cs)} images ({h['rule']}, seed {h['seed']}{cats}), sha256 {cs.sha256[:12]}")
    if h.get("skipped", "0") != "0":  # named, skipped, counted; the set is made, the exit says so
        print(f"detnet-trt calib-set: error: skipped {h['skipped']}", file=sys.stderr)
        return EXIT_SKIPPED_IMAGES
    return 0
