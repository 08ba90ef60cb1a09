"""``detnet-trt train``: train a DetNet detector on COCO-format data (CPU, CUDA, or torchrun)."""

from __future__ import annotations

import argparse

from ..core.limits import (
    COUNT,
    EPOCHS,
    EPOCHS_OR_ZERO,
    LEARNING_RATE,
    MODEL_SIDE,
    SEED,
    TRAIN_BATCH,
    WARMUP_EPOCHS,
    WEIGHT_DECAY,
    WORKERS,
)
from ._options import number, size

MODELS = ("detnet_tiny", "detnet59")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a detector on COCO-format data",
        description="Train a DetNet detector on a COCO-format folder (annotations/instances_{train,val}.json, "
        "images/{train,val}/). Writes the best checkpoint by val AP to -o and a resumable "
        "<stem>.last.pt beside it after every epoch. Several processes: torchrun --nproc_per_node N "
        "-m detnet_trt train ... (--batch is the global batch).",
    )
    p.add_argument("--data", required=True, help="COCO-format dataset folder (e.g. from `detnet-trt synth`)")
    p.add_argument("--model", default="detnet_tiny", choices=MODELS, help="model variant (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="best checkpoint path, e.g. ckpt.pt")
    p.add_argument("--epochs", type=number(EPOCHS), default=12, help="default: %(default)s")
    p.add_argument("--batch", type=number(TRAIN_BATCH), default=16, help="global batch size (default: %(default)s)")
    p.add_argument("--imgsz", type=size(MODEL_SIDE, order="hw", square=True), default=None, help="input size SIZE or H,W (default: the model's)")
    p.add_argument("--workers", type=number(WORKERS), default=2, help="data loading processes per rank (default: %(default)s)")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="default: %(default)s")
    p.add_argument("--lr", type=number(LEARNING_RATE), default=None, help="peak learning rate (default: 1e-3 adamw, 0.01 sgd)")
    p.add_argument("--weight-decay", type=number(WEIGHT_DECAY), default=None, help="default: 0.05 adamw, 1e-4 sgd")
    p.add_argument("--warmup-epochs", type=number(WARMUP_EPOCHS), default=1.0, help="linear warm-up length (default: %(default)s)")
    p.add_argument("--pretrained-backbone", metavar="PATH", help="DetNet-59 ImageNet weights to start the backbone from")
    p.add_argument("--resume", metavar="LAST_PT", help="continue a run from its <stem>.last.pt")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--no-augment", action="store_true", help="disable resize/flip/colour augmentation")
    p.add_argument("--val-every", type=number(EPOCHS_OR_ZERO), default=1, help="val AP every N epochs; 0: only at the end")
    p.add_argument("--val-images", type=number(COUNT), default=None, help="val AP on the first N val images only (default: all)")
    p.add_argument("--seed", type=number(SEED), default=0, help="default: %(default)s")
    p.add_argument("--force", action="store_true", help="overwrite existing checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        output=args.output,
        model=args.model,
        epochs=args.epochs,
        batch=args.batch,
        imgsz=args.imgsz,
        workers=args.workers,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        pretrained_backbone=args.pretrained_backbone,
        resume=args.resume,
        device=args.device,
        amp=not args.no_amp,
        augment=not args.no_augment,
        val_every=args.val_every,
        val_images=args.val_images,
        seed=args.seed,
        force=args.force,
        progress=not args.no_progress,
    )
    result = train(cfg)
    if result.history:  # rank 0 only
        print(f"best val AP {result.best_ap:.2f} (epoch {result.best_epoch}): {result.best_path}")
        print(f"last (resumable): {result.last_path}")
    return 0
