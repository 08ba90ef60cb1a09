"""Shared fixtures and the ``gpu`` marker.

Tests marked ``gpu`` need a CUDA device *and* TensorRT + pycuda; they are skipped (never faked)
where any of these is missing.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# Tests import ONNX Runtime directly too: keep its telemetry off for the whole run (the package does
# the same through detnet_trt.core.offline.import_ort; tests/test_no_network.py checks that).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _have_gpu_stack() -> tuple[bool, str]:
    for mod in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(mod) is None:
            return False, f"{mod} is not installed"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() < 1:
            return False, "no CUDA device"
    except Exception as err:  # noqa: BLE001 - any failure means no usable GPU
        return False, f"CUDA unavailable: {err}"
    return True, ""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU with TensorRT and pycuda (skipped otherwise)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    ok, why = _have_gpu_stack()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {why}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --- the tiny model: a checkpoint and its exported ONNX (EXPORT engineer) -----------------------
TINY_CLASSES = ["circle", "square", "triangle"]
TINY_INPUT = (128, 128)


def _spread_head(model) -> None:
    """Re-initialise the head so an untrained model gives varied scores and real-sized boxes.

    The detector's own init (scores all near sqrt(prior) and zero-size boxes) gives every
    candidate almost the same score, which leaves nothing to compare in parity tests.
    """
    from torch import nn

    head = model.head
    for mod in head.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    for conv in (head.cls_logits, head.ctr_pred):
        nn.init.normal_(conv.weight, std=1.0)
        nn.init.constant_(conv.bias, -1.0)
    nn.init.normal_(head.box_pred.weight, std=0.02)
    nn.init.constant_(head.box_pred.bias, 2.0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """Path of a ``detnet_tiny`` checkpoint: 3 classes, 128 x 128 input, random init (seed 0)."""
    import torch

    from detnet_trt.models import build_model
    from detnet_trt.models.checkpoint import save_checkpoint

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("detnet_tiny", len(TINY_CLASSES), class_names=TINY_CLASSES, input_size=TINY_INPUT)
        _spread_head(model)
    return save_checkpoint(model.eval(), tmp_path_factory.mktemp("tiny_ckpt") / "detnet_tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory):
    """Path of ``tiny_checkpoint`` exported to FP32 ONNX (nchw, host NMS, the checkpoint's top-K)."""
    from detnet_trt.export.onnx import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("tiny_onnx") / "detnet_tiny.onnx")


@pytest.fixture(scope="session")
def tiny_scenes(tmp_path_factory: pytest.TempPathFactory):
    """``make(images, seed, splits=("val",))``: a new synthetic COCO-layout dataset (``TINY_INPUT``,
    half of it val) whose ``splits`` annotations keep only ``TINY_CLASSES`` (the tiny model's:
    evaluation matches classes by name); returns its root."""
    import json
    from pathlib import Path

    from detnet_trt.data.synth import make_synth_dataset

    def make(images: int, seed: int, splits: tuple[str, ...] = ("val",)) -> Path:
        root = Path(make_synth_dataset(tmp_path_factory.mktemp("scenes") / "data", images=images, seed=seed,
                                       size=TINY_INPUT, val_fraction=0.5, progress=False))
        for split in splits:
            ann = root / "annotations" / f"instances_{split}.json"
            d = json.loads(ann.read_text())
            keep = {c["id"] for c in d["categories"] if c["name"] in TINY_CLASSES}
            d["categories"] = [c for c in d["categories"] if c["id"] in keep]
            d["annotations"] = [a for a in d["annotations"] if a["category_id"] in keep]
            ann.write_text(json.dumps(d))
        return root

    return make
