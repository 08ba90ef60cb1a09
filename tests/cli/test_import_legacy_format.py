"""``import-detnet-pytorch`` on their checkpoint as PyTorch 0.3's ``torch.save`` wrote it: the
pre-zip (legacy) serialization, their dict layout (``session``, ``epoch``, ``model`` as an
OrderedDict, ``optimizer`` state, ``pooling_mode``, ``class_agnostic``), read back with
``torch.load(weights_only=True)``; tensors both as today's legacy writer pickles them and as 0.3
did (``torch._utils._rebuild_tensor``, before ``_rebuild_tensor_v2``)."""

from __future__ import annotations

import pickle
import types
import warnings
from collections import OrderedDict

import pytest
import torch
from fpn_checkpoint import NUM_CLASSES, their_checkpoint

from detnet_trt.cli import main
from detnet_trt.models.checkpoint import load_checkpoint


class _Pickler03(pickle.Pickler):
    """Tensors reduced as PyTorch 0.3 did: ``_rebuild_tensor(storage, offset, size, stride)``."""

    def reducer_override(self, obj):
        if type(obj) is torch.Tensor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # TypedStorage: what 0.3 pickled
                storage = obj.storage()
            return torch._utils._rebuild_tensor, (storage, obj.storage_offset(), tuple(obj.size()), obj.stride())
        return NotImplemented


_PICKLE_03 = types.ModuleType("pickle_torch03")
_PICKLE_03.__dict__.update({k: getattr(pickle, k) for k in dir(pickle) if not k.startswith("__")})
_PICKLE_03.Pickler = _Pickler03  # type: ignore[attr-defined]


def _their_legacy_dict() -> dict:
    ckpt = their_checkpoint()
    model = OrderedDict(ckpt["model"])  # 0.3's state_dict() is an OrderedDict of plain tensors
    ids = list(range(len(model)))
    optimizer = {  # torch.optim.SGD state_dict(): momentum buffers keyed by parameter ids
        "state": {i: {"momentum_buffer": torch.zeros(1)} for i in ids[:3]},
        "param_groups": [{"lr": 0.001, "momentum": 0.9, "dampening": 0, "weight_decay": 0.0001,
                          "nesterov": False, "params": ids}],
    }
    return {"session": 1, "epoch": 12, "model": model, "optimizer": optimizer,
            "pooling_mode": "align", "class_agnostic": False}


@pytest.mark.parametrize("tensors", ["today", "torch03"])
def test_legacy_format_checkpoint_imports(tmp_path, capsys, tensors) -> None:
    obj = _their_legacy_dict()
    src = tmp_path / "fpn_1_12_1000.pth"
    kw = {"pickle_module": _PICKLE_03} if tensors == "torch03" else {}
    with open(src, "wb") as f:
        torch.save(obj, f, _use_new_zipfile_serialization=False, **kw)
    assert src.read_bytes()[:2] != b"PK"  # not a zip archive: the pre-1.6 layout
    if tensors == "torch03":
        assert b"_rebuild_tensor\n" in src.read_bytes() and b"_rebuild_tensor_v2" not in src.read_bytes()
    assert torch.load(src, weights_only=True)["model"].keys() == obj["model"].keys()
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"c{i}" for i in range(NUM_CLASSES - 1)) + "\n")
    out = tmp_path / "model.pt"
    rc = main(["import-detnet-pytorch", str(src), "--classes", str(names), "-o", str(out),
               "--input-size", "64x96", "--proposals", "20"])
    assert rc == 0, capsys.readouterr().err
    model, ckpt = load_checkpoint(out)
    assert ckpt["model"] == "detnet59_fpn" and ckpt["extra"]["epoch"] == 12
    # the weights are theirs, unchanged
    theirs = obj["model"]
    assert torch.equal(model.state_dict()["rpn.box.weight"], theirs["RCNN_rpn.RPN_bbox_pred.weight"])
