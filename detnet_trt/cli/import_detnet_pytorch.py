"""``detnet-trt import-detnet-pytorch CKPT --classes voc|coco|FILE -o model.pt``: a DetNet_pytorch
FPN checkpoint -> a detnet_trt checkpoint (see detnet_trt.models.pretrained_fpn)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.limits import MODEL_SIDE, PROPOSALS
from ._options import number, size


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import-detnet-pytorch",
        help="import a DetNet_pytorch FPN checkpoint (VOC / COCO) as a detnet_trt checkpoint",
        description="Turn a two-stage DetNet-59 FPN checkpoint trained by the public DetNet_pytorch code "
        "(fpn_*.pth) into a detnet_trt checkpoint (model detnet59_fpn) that export, quantize, build, infer, "
        "eval and serve take. Its detections are those of that code's test_net.py.",
    )
    p.add_argument("checkpoint", help="their fpn_<session>_<epoch>_<step>.pth")
    p.add_argument("--classes", required=True,
                   help="voc (20 classes), coco (80) or a text file with one foreground class name a line")
    p.add_argument("-o", "--output", required=True, help="detnet_trt checkpoint to write (.pt)")
    p.add_argument("--input-size", type=size(MODEL_SIDE, order="hw", multiple=16), default=None, metavar="HxW",
                   help="fixed input size, multiples of 16 (default 608x800: their 600-pixel test scale of a 4:3 image)")
    p.add_argument("--proposals", type=number(PROPOSALS), default=None,
                   help="RPN proposals kept per image (default 300, their TEST.RPN_POST_NMS_TOP_N)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=run)
    return p


def _class_names(spec: str) -> list[str]:
    from ..core.errors import InputError
    from ..models.two_stage.classes import DATASETS

    if spec.lower() in DATASETS:
        return list(DATASETS[spec.lower()])
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--classes {spec!r} is neither voc, coco nor a file", "pass voc, coco or a text file of class names")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--classes {spec}: cannot read it ({err})", "pass a UTF-8 text file, one class name a line") from err
    if names and names[0] == "__background__":
        names = names[1:]
    if not names:
        raise InputError(f"--classes {spec} lists no class names", "one foreground class name a line")
    return names


def run(args: argparse.Namespace) -> int:
    from ..core.fileio import check_writable
    from ..models.checkpoint import save_checkpoint
    from ..models.pretrained_fpn import load_detnet_pytorch_fpn, read_detnet_pytorch_checkpoint

    names = _class_names(args.classes)
    out = check_writable(args.output, args.force, inputs=(args.checkpoint,))
    ckpt = read_detnet_pytorch_checkpoint(args.checkpoint)
    overrides = {} if args.proposals is None else {"topk": args.proposals}
    model = load_detnet_pytorch_fpn(
        ckpt, len(names) + 1, names, args.input_size, source=str(args.checkpoint), **overrides
    )
    extra = {
        "imported_from": "DetNet_pytorch",
        "source": Path(args.checkpoint).name,
        "epoch": ckpt.get("epoch") if isinstance(ckpt.get("epoch"), int) else None,
        "classes": args.classes if args.classes.lower() in ("voc", "coco") else Path(args.classes).name,
    }
    path = save_checkpoint(model, out, extra=extra, force=True)
    h, w = model.input_size
    print(f"wrote {path}: detnet59_fpn, {len(names)} classes, input {h}x{w}, RoI pool {model.config.pool_size}, "
          f"{model.config.topk} proposals, detections: score > {model.config.det_conf}, per-class NMS "
          f"{model.config.det_iou}, {model.config.max_det} per image")
    return 0
