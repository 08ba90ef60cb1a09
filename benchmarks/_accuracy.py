"""Shared by the accuracy benchmarks (``int8_methods``, ``qdq_residual``, ``efficient_nms_threshold``):
the shipped checkpoint and calibration set, the git-ignored work folder, the synthetic datasets
they score on, and the COCO AP of one model on each."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _timing import machine

from detnet_trt.data.coco import resolve_coco_dir
from detnet_trt.data.synth import make_synth_dataset
from detnet_trt.evaluation.coco_eval import EvalOptions, evaluate

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"
CALIB = ROOT / "calibration" / "demo_synth_seed2026.txt"
#: the demo data's train images, which the committed calibration set lists relatively (under the work folder)
CALIB_IMAGES = Path("synth_2026") / "images" / "train"

Datasets = dict[str, tuple[Path, Path]]  # name -> (annotations, images)


def add_common_args(ap: argparse.ArgumentParser, name: str, calib: bool = True) -> None:
    """``--checkpoint``, ``--calib`` (unless ``calib`` is false), ``--work`` (default
    ``benchmarks/cpu/work/<name>``) and ``--out`` (the results folder)."""
    ap.add_argument("--checkpoint", default=str(CKPT))
    if calib:
        ap.add_argument("--calib", default=str(CALIB))
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "cpu" / "work" / name))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))


def work_dir(path: str | Path) -> Path:
    """The work folder, made, with a ``.gitignore`` of everything in its parent."""
    work = Path(path)
    work.mkdir(parents=True, exist_ok=True)
    if not (work.parent / ".gitignore").exists():
        (work.parent / ".gitignore").write_text("*\n")
    return work


def synth_datasets(work: Path, specs: Sequence[tuple[str, int, int, float]]) -> Datasets:
    """The val split of each ``(name, images, seed, val fraction)`` synthetic dataset under
    ``work/synth_<seed>``, made by :func:`make_synth_dataset` unless there already."""
    datasets = {}
    for name, n, seed, val in specs:
        root = work / f"synth_{seed}"
        if not (root / "annotations" / "instances_val.json").exists():
            make_synth_dataset(root, images=n, seed=seed, val_fraction=val, force=True, progress=False)
        datasets[name] = resolve_coco_dir(root, "val")
    return datasets


def ap_per_dataset(model: Path, datasets: Datasets) -> dict[str, float]:
    """COCO AP (0-100, two decimals) of ``model`` on each dataset, with the evaluation thresholds."""
    return {name: round(float(evaluate(model, ann, images, EvalOptions(progress=False)).metrics["AP"]), 2)
            for name, (ann, images) in datasets.items()}


def datasets_record(datasets: Datasets) -> dict[str, dict[str, object]]:
    """The results file's ``datasets``: each one's annotation file and image count."""
    return {k: {"ann": str(a), "images": len(list(Path(i).iterdir()))} for k, (a, i) in datasets.items()}


def score_models(models: dict[str, tuple[Path, dict[str, Any]]], datasets: Datasets) -> list[dict[str, Any]]:
    """One row per model, printed as it is made: its label, its ``extra`` fields, then its AP on each
    dataset (:func:`ap_per_dataset`)."""
    rows = []
    for label, (path, extra) in models.items():
        row = {"model": label, **extra, **ap_per_dataset(path, datasets)}
        rows.append(row)
        print(row, flush=True)
    return rows


def calibration_record(name: str, args: argparse.Namespace, datasets: Datasets, seconds: float,
                       rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The results file of a calibration benchmark (``--checkpoint`` and ``--calib`` relative to the repository)."""
    return {"benchmark": name, "checkpoint": str(Path(args.checkpoint).relative_to(ROOT)),
            "calibration_set": str(Path(args.calib).relative_to(ROOT)), "datasets": datasets_record(datasets),
            "seconds": round(seconds, 1), "machine": machine(), "results": rows}


__all__ = ["CALIB", "CALIB_IMAGES", "CKPT", "ROOT", "add_common_args", "ap_per_dataset",
           "calibration_record", "datasets_record", "score_models", "synth_datasets", "work_dir"]
