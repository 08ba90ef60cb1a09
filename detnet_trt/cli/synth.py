"""``detnet-trt synth``: write a synthetic COCO-format dataset (train + val) with a known answer."""

from __future__ import annotations

import argparse

from ..core.limits import FRACTION, MODEL_SIDE, SEED, SYNTH_IMAGES, SYNTH_OBJECTS
from ._options import number, size


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic COCO-format dataset (shapes; train and val splits)",
        description="Synthetic scenes of six shape classes (non-contiguous COCO category ids) in COCO's layout: "
        "OUT/annotations/instances_{train,val}.json and OUT/images/{train,val}/. Deterministic for a seed.",
    )
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--images", type=number(SYNTH_IMAGES), default=500, help="total number of images, both splits (default 500)")
    p.add_argument("--val-fraction", type=number(FRACTION), default=0.2, help="fraction of the images in val (default 0.2)")
    p.add_argument("--seed", type=number(SEED), default=0, help="random seed (default 0)")
    p.add_argument("--size", type=size(MODEL_SIDE, order="hw", square=True), default=(320, 320), help="image size N or HxW (default 320)")
    p.add_argument("--max-objects", type=number(SYNTH_OBJECTS), default=8, help="most objects per image (default 8)")
    p.add_argument("--force", action="store_true", help="overwrite an existing dataset")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..data.synth import make_synth_dataset

    out = make_synth_dataset(
        args.out,
        images=args.images,
        seed=args.seed,
        size=args.size,
        val_fraction=args.val_fraction,
        max_objects=args.max_objects,
        force=args.force,
    )
    print(f"wrote {args.images} images to {out} (annotations/instances_{{train,val}}.json, images/{{train,val}}/)")
    return 0
