"""Training a DetNet detector on COCO-format data, on CPU, one GPU, or many under ``torchrun``.

:func:`train` builds the model (optionally from the DetNet-59 ImageNet backbone weights), trains
it with AdamW or SGD (linear warm-up, then cosine decay, stepped every iteration), evaluates COCO
AP on the val split after each epoch with :func:`detnet_trt.evaluation.coco_eval.evaluate` (export-free:
the PyTorch model runs behind the :class:`~detnet_trt.runtime.backends.torch_backend.TorchBackend`), and
writes two checkpoints atomically every epoch:

- ``output`` (e.g. ``ckpt.pt``): the best model so far by val AP (model only, small);
- ``<output stem>.last.pt``: the last epoch with everything ``resume`` needs (optimizer,
  scheduler, gradient scaler, epoch, RNG states, history), so a resumed run continues exactly.

Both are ordinary :mod:`detnet_trt.models.checkpoint` files: export, eval and infer accept either.

``batch`` is the *global* batch. Under ``torchrun`` (``WORLD_SIZE`` > 1) each of the N processes
takes ``batch / N`` images per step, the model is wrapped in ``DistributedDataParallel`` (gloo on
CPU, nccl on CUDA, BatchNorm synchronised on CUDA), a ``DistributedSampler`` splits each epoch's
permutation, and only rank 0 evaluates and writes. A single process uses the same sampler with
one replica, and augmentation is seeded per (seed, epoch, sample index), so one process and N
processes see the same images with the same augmentation at each step.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..core.errors import DetnetError, InputError, ModelFileError
from ..core.fileio import check_writable
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
    check_ranges,
)

OPTIMIZERS = ("adamw", "sgd")
_DEFAULT_LR = {"adamw": 1e-3, "sgd": 0.01}
_DEFAULT_WD = {"adamw": 0.05, "sgd": 1e-4}


class TrainingError(DetnetError):
    """Training cannot go on (diverged loss, empty dataset, mismatched resume, ...)."""


@dataclass
class TrainConfig:
    """Everything a run depends on (recorded in the checkpoints)."""

    data: str
    output: str = "detnet.pt"
    model: str = "detnet_tiny"
    epochs: int = 12
    batch: int = 16  # global batch, split over distributed processes
    imgsz: tuple[int, int] | None = None  # (H, W); None: the model variant's default
    workers: int = 2
    optimizer: str = "adamw"
    lr: float | None = None  # None: 1e-3 (adamw) / 0.01 (sgd), for the global batch
    weight_decay: float | None = None  # None: 0.05 (adamw) / 1e-4 (sgd); never on norms/biases
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 10.0  # max gradient norm; 0 disables
    pretrained_backbone: str | None = None
    resume: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    seed: int = 0
    augment: bool = True
    val_every: int = 1  # evaluate every N epochs (and always after the last); 0: only after the last
    val_images: int | None = None  # evaluate on the first N val images only (None: all)
    val_split: str = "val"
    train_split: str = "train"
    max_steps_per_epoch: int | None = None  # for smoke tests
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_ranges(
            ("--epochs", EPOCHS, self.epochs), ("--batch", TRAIN_BATCH, self.batch), ("--workers", WORKERS, self.workers),
            ("--lr", LEARNING_RATE, self.lr), ("--weight-decay", WEIGHT_DECAY, self.weight_decay),
            ("--warmup-epochs", WARMUP_EPOCHS, self.warmup_epochs), ("--val-every", EPOCHS_OR_ZERO, self.val_every),
            ("--val-images", COUNT, self.val_images), ("--seed", SEED, self.seed),
            *(("--imgsz", MODEL_SIDE, side) for side in (self.imgsz or ())),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["imgsz"] = list(self.imgsz) if self.imgsz else None
        return d


@dataclass
class TrainResult:
    best_path: Path
    last_path: Path
    best_ap: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    step_losses: list[float] = field(default_factory=list)  # global mean loss at every step


def last_path_for(output: str | os.PathLike[str]) -> Path:
    """``ckpt.pt`` -> ``ckpt.last.pt`` (the resumable checkpoint beside the best one)."""
    p = Path(output)
    return p.with_name(p.stem + ".last" + (p.suffix or ".pt"))


# --- distributed -----------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_device_and_dist(requested: str) -> tuple[torch.device, _Dist]:
    if requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(requested)
        except RuntimeError as err:
            raise InputError(f"unknown device {requested!r}", "use auto, cpu, cuda or cuda:N") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {requested!r} requested but CUDA is not available", "use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return device, _Dist()
    info = _Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=1)
        )
        info.initialised_here = True
    return device, info


def _all_mean(values: torch.Tensor, d: _Dist) -> torch.Tensor:
    if d.world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= d.world
    return values


# --- optimisation ------------------------------------------------------------------------------
def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on normalisation weights and biases (1-D parameters)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {cfg.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
    lr = cfg.lr if cfg.lr is not None else _DEFAULT_LR[cfg.optimizer]
    wd = cfg.weight_decay if cfg.weight_decay is not None else _DEFAULT_WD[cfg.optimizer]
    groups = _param_groups(model, wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR factor at step ``s``: linear 0.01 -> 1 over ``warmup_steps``, then cosine to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.01 + 0.99 * step / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


# --- checkpoints -------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _build_or_resume(cfg: TrainConfig, class_names: list[str]) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    from ..models import build_model
    from ..models.checkpoint import load_checkpoint

    if cfg.resume:
        model, ckpt = load_checkpoint(cfg.resume)
        state = (ckpt.get("extra") or {}).get("train_state")
        if not state:
            raise ModelFileError(
                f"{cfg.resume} has no training state", "resume from a '*.last.pt' file written by train"
            )
        if list(model.meta().class_names) != list(class_names):
            raise TrainingError(
                f"{cfg.resume} was trained on classes {model.meta().class_names}, the data has {class_names}",
                "resume with the same dataset",
            )
        return model, state
    kwargs: dict[str, Any] = {}
    if cfg.imgsz:
        kwargs["input_size"] = tuple(cfg.imgsz)
    if cfg.pretrained_backbone:
        p = Path(cfg.pretrained_backbone)
        if not p.is_file():
            raise ModelFileError(f"{p}: no such file", "pass the DetNet-59 ImageNet weights (.pth)")
        kwargs["pretrained_backbone"] = str(p)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=len(class_names), class_names=list(class_names), **kwargs)
    return model, None


def _input_size(model: torch.nn.Module) -> tuple[int, int]:
    h, w = model.meta().input_size  # type: ignore[operator]
    return int(h), int(w)


def _evaluate(
    model: torch.nn.Module, device: torch.device, ann_file: Path, image_dir: Path, max_images: int | None = None
) -> dict[str, float]:
    from ..evaluation.coco_eval import EvalOptions, evaluate
    from ..runtime.backends.torch_backend import TorchBackend

    clone = copy.deepcopy(model).eval()
    with TorchBackend(clone, device=str(device)) as backend:
        result = evaluate(backend, ann_file, image_dir, EvalOptions(max_images=max_images, progress=False))
    return {k: float(v) for k, v in result.metrics.items()}


# --- the loop ----------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> TrainResult:
    """Train per ``cfg``; returns the best/last checkpoint paths and the history (rank 0's view)."""
    if cfg.epochs < 1 or cfg.batch < 1:
        raise InputError(f"epochs and batch must be >= 1, got {cfg.epochs} and {cfg.batch}")
    device, d = _setup_device_and_dist(cfg.device)
    try:
        run = _prepare(cfg, device, d)
        for epoch in range(run.start_epoch, cfg.epochs):
            record = _train_epoch(run, epoch)
            _end_epoch(run, epoch, record)
        return TrainResult(run.out, run.last, run.best_ap, run.best_epoch, run.history, run.step_losses)
    finally:
        if d.initialised_here:
            dist.destroy_process_group()


@dataclass
class _Run:
    """One run's state, shared by the steps of :func:`train`."""

    cfg: TrainConfig
    device: torch.device
    d: _Dist
    out: Path  # best checkpoint
    last: Path  # resumable checkpoint
    val: tuple[Path, Path]  # val annotations, val images
    train_ds: Any  # data.dataset.DetectionDataset
    sampler: Any  # DistributedSampler
    loader: Any  # DataLoader
    steps: int  # per epoch
    model: torch.nn.Module
    net: torch.nn.Module  # model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype
    start_epoch: int = 0
    best_ap: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)


def _prepare(cfg: TrainConfig, device: torch.device, d: _Dist) -> _Run:
    """Outputs checked, data, model (new or resumed), loader, optimizer, schedule and AMP."""
    from ..data.coco import CocoDataset, resolve_coco_dir
    from ..data.dataset import Augment, DetectionDataset

    if cfg.batch % d.world:
        raise InputError(
            f"global batch {cfg.batch} is not divisible by {d.world} processes",
            "pick --batch as a multiple of the number of processes",
        )
    out = Path(cfg.output)
    last = last_path_for(out)
    if d.main and not cfg.resume:
        check_writable(out, cfg.force, inputs=(cfg.pretrained_backbone,))
        check_writable(last, cfg.force)

    train_ann, train_dir = resolve_coco_dir(cfg.data, cfg.train_split)
    val = resolve_coco_dir(cfg.data, cfg.val_split)
    CocoDataset(*val)  # a malformed val file fails now, not after the first epoch
    train_ds = DetectionDataset(
        train_ann, train_dir, cfg.imgsz or (64, 64), augment=Augment() if cfg.augment else None, seed=cfg.seed
    )
    model, state = _build_or_resume(cfg, train_ds.class_names)
    model.to(device)
    train_ds.input_size = _input_size(model)  # the variant's default when --imgsz is not given
    train_ds.layout = getattr(model, "layout", "nchw")
    sampler, loader, steps = _data_loader(cfg, train_ds, device, d)

    net: torch.nn.Module = model
    if d.world > 1:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(model, cfg)
    total = steps * cfg.epochs
    warm = min(max(1, round(cfg.warmup_epochs * steps)), max(1, total // 3))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warm, cfg.min_lr_ratio))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    run = _Run(cfg, device, d, out, last, val, train_ds, sampler, loader, steps, model, net, optimizer,
               scheduler, scaler, use_amp, amp_dtype)
    if state is not None:
        _restore(run, state)
    return run


def _data_loader(cfg: TrainConfig, train_ds: Any, device: torch.device, d: _Dist) -> tuple[Any, Any, int]:
    """This rank's sampler and loader (``batch / world`` images per step), and the steps per epoch."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from ..data.dataset import collate, worker_init

    sampler: DistributedSampler = DistributedSampler(
        train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed
    )
    loader = DataLoader(
        train_ds,
        batch_size=cfg.batch // d.world,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init,
    )
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    if steps < 1:
        raise TrainingError(f"{len(train_ds)} training images give no full batch of {cfg.batch}", "lower --batch")
    return sampler, loader, steps


def _restore(run: _Run, state: dict[str, Any]) -> None:
    """Continue from a ``*.last.pt`` training state (same schedule only)."""
    cfg = run.cfg
    if state["config"]["epochs"] != cfg.epochs or state["config"]["batch"] != cfg.batch:
        raise TrainingError(
            f"{cfg.resume} was started with --epochs {state['config']['epochs']} --batch "
            f"{state['config']['batch']}, resuming with {cfg.epochs} / {cfg.batch}",
            "resume with the same --epochs and --batch (the LR schedule depends on them)",
        )
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.best_ap, run.best_epoch = state["epoch"] + 1, state["best_ap"], state["best_epoch"]
    run.history, run.step_losses = list(state["history"]), list(state["step_losses"])
    _set_rng_state(state["rng"])
    if run.d.main:
        print(f"resuming {cfg.resume} at epoch {run.start_epoch + 1}/{cfg.epochs}", file=sys.stderr)


def _train_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One pass over this epoch's ``steps`` batches; returns the epoch's record (mean losses, lr, time)."""
    cfg = run.cfg
    t0 = time.perf_counter()
    run.sampler.set_epoch(epoch)
    run.train_ds.set_epoch(epoch)
    run.net.train()
    sums: dict[str, float] = {}
    bar = None
    if run.d.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=run.steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="it", leave=True)
    for i, (images, targets) in enumerate(run.loader):
        if i >= run.steps:
            break
        step_loss = _train_step(run, images, targets, f"at epoch {epoch + 1}, step {i + 1}")
        run.step_losses.append(step_loss["loss"])
        for k, v in step_loss.items():
            sums[k] = sums.get(k, 0.0) + v
        if bar is not None:
            postfix = {k: f"{v / (i + 1):.3f}" for k, v in sums.items()}
            bar.set_postfix(postfix | {"lr": f"{run.scheduler.get_last_lr()[0]:.2e}"})
            bar.update(1)
    if bar is not None:
        bar.close()
    return {
        "epoch": epoch + 1,
        "lr": run.scheduler.get_last_lr()[0],
        "train_seconds": round(time.perf_counter() - t0, 2),
        **{f"train_{k}": v / run.steps for k, v in sums.items()},
    }


def _train_step(
    run: _Run, images: torch.Tensor, targets: list[dict[str, torch.Tensor]], where: str
) -> dict[str, float]:
    """Forward, backward (scaled, clipped) and an optimizer + LR step; returns the losses
    averaged over the processes."""
    device, cfg = run.device, run.cfg
    images = images.to(device, non_blocking=True)
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.use_amp):
        losses = run.net(images, targets)
    names = sorted(losses)
    logged = _all_mean(torch.stack([losses[k].detach().float() for k in names]), run.d).tolist()
    step_loss = dict(zip(names, logged))
    if not math.isfinite(step_loss["loss"]):
        raise TrainingError(f"the loss became {step_loss['loss']} {where}", "lower --lr or raise --warmup-epochs")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(losses["loss"]).backward()
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    return step_loss


def _end_epoch(run: _Run, epoch: int, record: dict[str, Any]) -> None:
    """Rank 0: val AP (every ``val_every`` epochs and after the last), the best and the last
    checkpoints, a summary line. Then every rank waits for the others."""
    cfg = run.cfg
    is_last = epoch + 1 == cfg.epochs
    do_val = is_last or (cfg.val_every > 0 and (epoch + 1) % cfg.val_every == 0)
    if run.d.main:
        from ..models.checkpoint import save_checkpoint

        if do_val:
            t1 = time.perf_counter()
            metrics = _evaluate(run.model, run.device, run.val[0], run.val[1], cfg.val_images)
            record["val"] = metrics
            record["val_seconds"] = round(time.perf_counter() - t1, 2)
            if metrics.get("AP", -1.0) > run.best_ap:
                run.best_ap, run.best_epoch = metrics["AP"], epoch + 1
                record["best"] = True
        run.history.append(record)
        if record.get("best") or not run.out.exists():
            provenance = {"epoch": epoch + 1, "val": record.get("val"), "config": cfg.to_dict()}
            save_checkpoint(run.model, run.out, extra={"train": provenance})
        save_checkpoint(run.model, run.last, extra={"train_state": _train_state(run, epoch)})
        print(_summary(record, cfg.epochs), file=sys.stderr, flush=True)
    if run.d.world > 1:
        dist.barrier()


def _train_state(run: _Run, epoch: int) -> dict[str, Any]:
    """What ``resume`` needs to continue exactly after ``epoch``."""
    return {
        "epoch": epoch,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "best_ap": run.best_ap,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "step_losses": run.step_losses,
        "rng": _rng_state(),
        "config": run.cfg.to_dict(),
    }


def _summary(record: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record.get('train_loss', float('nan')):.4f}"]
    val = record.get("val")
    if val:
        parts.append(f"val AP {val.get('AP', float('nan')):.2f} AP50 {val.get('AP50', float('nan')):.2f}")
        if record.get("best"):
            parts.append("(best)")
    parts.append(f"{record['train_seconds']:.0f}s")
    return "  ".join(parts)
