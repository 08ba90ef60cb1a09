"""Training: checkpoints + val AP per epoch, exact resume, schedule, CLI errors, DDP (2 gloo processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detnet_trt.cli import main
from detnet_trt.core.errors import ModelFileError, OutputExistsError
from detnet_trt.data.synth import make_synth_dataset
from detnet_trt.models.checkpoint import load_checkpoint
from detnet_trt.training import trainer as train_mod
from detnet_trt.training.trainer import TrainConfig, TrainingError, last_path_for, train, warmup_cosine

IMGSZ = (64, 64)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    # 10 train + 2 val images of 96 x 96
    return make_synth_dataset(
        tmp_path_factory.mktemp("synth"), images=12, seed=11, size=(96, 96), val_fraction=1 / 6, progress=False
    )


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = {
        "data": str(data), "output": str(out), "model": "detnet_tiny", "epochs": 1, "batch": 4, "imgsz": IMGSZ, "workers": 0,
        "device": "cpu", "progress": False, "seed": 0,
    }
    base.update(kw)
    return TrainConfig(**base)


def test_one_epoch_writes_best_and_last_with_val_metrics(synth_dir, tmp_path):
    res = train(_cfg(synth_dir, tmp_path / "m.pt"))
    assert res.best_path == tmp_path / "m.pt" and res.last_path == tmp_path / "m.last.pt"
    assert len(res.history) == 1 and len(res.step_losses) == 2  # 10 train images, batch 4, drop_last
    assert all(np.isfinite(res.step_losses))
    val = res.history[0]["val"]
    assert {"AP", "AP50", "AP75"} <= set(val) and res.best_ap == val["AP"]
    model, ckpt = load_checkpoint(res.best_path)
    assert model.meta().input_size == IMGSZ and model.meta().class_names[0] == "circle"
    assert "train_state" not in ckpt["extra"]  # the best checkpoint stays small
    _, last = load_checkpoint(res.last_path)
    assert last["extra"]["train_state"]["epoch"] == 0
    assert set(last["extra"]["train_state"]) >= {"optimizer", "scheduler", "rng", "history", "step_losses"}


def test_refuses_to_overwrite_without_force(synth_dir, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"user file")
    with pytest.raises(OutputExistsError, match="--force"):
        train(_cfg(synth_dir, tmp_path / "m.pt"))
    assert (tmp_path / "m.pt").read_bytes() == b"user file"


def test_resume_continues_exactly(synth_dir, tmp_path, monkeypatch):
    straight = train(_cfg(synth_dir, tmp_path / "a.pt", epochs=2, lr=3e-3))

    # the same run, interrupted while evaluating epoch 2 (last.pt then holds epoch 1) ...
    real_eval, calls = train_mod._evaluate, []

    def flaky_eval(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_evaluate", flaky_eval)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(synth_dir, tmp_path / "b.pt", epochs=2, lr=3e-3))
    monkeypatch.setattr(train_mod, "_evaluate", real_eval)
    # ... and resumed: same weights, same loss curve, same history length
    resumed = train(_cfg(synth_dir, tmp_path / "b.pt", epochs=2, lr=3e-3, resume=str(tmp_path / "b.last.pt")))
    assert resumed.step_losses == straight.step_losses
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    a, _ = load_checkpoint(straight.last_path)
    b, _ = load_checkpoint(resumed.last_path)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name


def test_resume_rejects_a_different_schedule_and_a_plain_checkpoint(synth_dir, tmp_path):
    res = train(_cfg(synth_dir, tmp_path / "m.pt"))
    with pytest.raises(TrainingError, match="--epochs"):
        train(_cfg(synth_dir, tmp_path / "m.pt", epochs=3, resume=str(res.last_path)))
    with pytest.raises(ModelFileError, match="no training state"):
        train(_cfg(synth_dir, tmp_path / "m.pt", resume=str(res.best_path)))


def test_pretrained_backbone_weights_are_loaded(synth_dir, tmp_path):
    from detnet_trt.models import build_model

    torch.manual_seed(123)
    donor = build_model("detnet_tiny", num_classes=6, input_size=IMGSZ)
    torch.save(donor.backbone.state_dict(), tmp_path / "backbone.pth")
    model, state = train_mod._build_or_resume(
        _cfg(synth_dir, tmp_path / "m.pt", pretrained_backbone=str(tmp_path / "backbone.pth")), ["a"] * 6
    )
    assert state is None
    for (name, want), got in zip(donor.backbone.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(want, got), name
    with pytest.raises(ModelFileError, match="no such file"):
        train(_cfg(synth_dir, tmp_path / "m.pt", pretrained_backbone=str(tmp_path / "missing.pth")))


def test_warmup_then_cosine():
    f = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.05)
    assert f(0) == pytest.approx(0.01) and f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.05)
    ramp = [f(s) for s in range(11)]
    decay = [f(s) for s in range(10, 101)]
    assert ramp == sorted(ramp) and decay == sorted(decay, reverse=True)


def test_cli_train_and_user_errors(synth_dir, tmp_path, capsys):
    out = tmp_path / "c.pt"
    args = ["train", "--data", str(synth_dir), "-o", str(out), "--epochs", "1", "--batch", "4",
            "--imgsz", "64", "--workers", "0", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    assert out.is_file() and last_path_for(out).is_file()
    assert "best val AP" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "nope"), "-o", str(out), "--force"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(TrainingError, match="no full batch"):
        train(_cfg(synth_dir, tmp_path / "d.pt", batch=64))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(synth_dir, tmp_path):
    """torchrun, 2 CPU processes x batch 2 vs 1 process x batch 4: the same loss curve.

    Not bit-identical: BatchNorm statistics are per process on CPU (SyncBatchNorm is CUDA-only)
    and the loss is normalised by each process's positives, so a tolerance applies.
    """
    kw = {"epochs": 2, "batch": 4, "lr": 2e-3, "val_every": 0}
    single = train(_cfg(synth_dir, tmp_path / "single.pt", **kw))
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "-m", "detnet_trt", "train", "--data", str(synth_dir), "-o", str(out),
        "--epochs", "2", "--batch", "4", "--lr", "2e-3", "--val-every", "0", "--imgsz", "64", "--workers", "0",
        "--device", "cpu", "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, last = load_checkpoint(last_path_for(out))
    ddp = last["extra"]["train_state"]["step_losses"]
    assert len(ddp) == len(single.step_losses) == 4
    print("curves", ddp, single.step_losses)
    np.testing.assert_allclose(ddp, single.step_losses, rtol=0.05)
    assert ddp[0] != ddp[-1]  # the curve moves
