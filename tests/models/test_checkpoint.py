"""Checkpoint round trip and each bad-file error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detnet_trt.core.errors import ModelFileError, OutputExistsError
from detnet_trt.core.fileio import sha256_file
from detnet_trt.models import DetNetDetector, build_model
from detnet_trt.models.checkpoint import FORMAT, checkpoint_sha256, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[DetNetDetector, Path]:
    torch.manual_seed(0)
    m = build_model("detnet_tiny", 3, class_names=["cat", "dog", "bird"], input_size=(64, 64), topk=40).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(m, path, extra={"epochs": 3, "note": "test"})
    return m, path


def test_round_trip(saved: tuple[DetNetDetector, Path]) -> None:
    m, path = saved
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training
    assert ckpt["format"] == FORMAT and ckpt["model"] == "detnet_tiny"
    assert ckpt["class_names"] == ["cat", "dog", "bird"] and ckpt["input_size"] == [64, 64]
    assert ckpt["extra"] == {"epochs": 3, "note": "test"}
    assert loaded.meta() == m.meta()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        for a, b in zip(m(x), loaded(x)):
            assert torch.equal(a, b)
    assert checkpoint_sha256(path) == sha256_file(path)
    # no temporary files left beside it
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]


def test_no_overwrite_without_force(saved: tuple[DetNetDetector, Path]) -> None:
    m, path = saved
    with pytest.raises(OutputExistsError):
        save_checkpoint(m, path, force=False)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"nope\.pt: no such file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated(saved: tuple[DetNetDetector, Path], tmp_path: Path) -> None:
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(saved[1].read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"truncated\.pt cannot be read"):
        load_checkpoint(bad)


def test_not_torch(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(ModelFileError, match=r"notes\.pt cannot be read"):
        load_checkpoint(bad)


def test_plain_state_dict(saved: tuple[DetNetDetector, Path], tmp_path: Path) -> None:
    bad = tmp_path / "state.pt"
    torch.save(saved[0].state_dict(), bad)
    with pytest.raises(ModelFileError, match=r"state\.pt is not a detnet_trt checkpoint"):
        load_checkpoint(bad)


class _Custom:
    """An arbitrary class: ``weights_only=True`` must refuse to unpickle it."""


def test_unsafe_pickle_refused(tmp_path: Path) -> None:
    bad = tmp_path / "pickle.pt"
    torch.save({"format": FORMAT, "obj": _Custom()}, bad)
    with pytest.raises(ModelFileError, match=r"pickle\.pt cannot be read"):
        load_checkpoint(bad)


def test_wrong_fields(saved: tuple[DetNetDetector, Path], tmp_path: Path) -> None:
    ckpt = torch.load(saved[1], weights_only=True)
    cases = {
        "unknown_model": dict(ckpt, model="yolo"),
        "lacks": {k: v for k, v in ckpt.items() if k != "state_dict"},
        "bad_config": dict(ckpt, config=dict(ckpt["config"], stride_in="5x5")),
        "weights": dict(ckpt, state_dict={k: v for k, v in ckpt["state_dict"].items() if "layer5" not in k}),
        "shape": dict(ckpt, config=dict(ckpt["config"], num_classes=4), class_names=["a", "b", "c", "d"]),
    }
    expected = {
        "unknown_model": "unknown model 'yolo'",
        "lacks": r"lacks the field\(s\) \['state_dict'\]",
        "bad_config": "invalid config",
        "weights": "weights do not fit.*missing.*layer5",
        "shape": "mis-shaped.*cls_logits",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(content, path)
        with pytest.raises(ModelFileError, match=f"{name}.pt.*{expected[name]}"):
            load_checkpoint(path)
