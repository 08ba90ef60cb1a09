"""``eval`` with a corrupt image in the dataset: named as met, skipped, the metrics of the others,
counted at the end, exit 1; every image unreadable is exit 2 (detnet_trt/core/images.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corrupt import write_corrupt_images

from detnet_trt.cli import main
from detnet_trt.core.errors import InputError
from detnet_trt.core.images import SkippedImages
from detnet_trt.evaluation.coco_eval import EvalOptions, evaluate


@pytest.fixture()
def data(tiny_scenes) -> Path:
    return tiny_scenes(8, seed=5)


def _damage(root: Path, k: int) -> list[Path]:
    """Overwrite the first ``k`` val images with damaged bytes (the file names stay)."""
    d = json.loads((root / "annotations" / "instances_val.json").read_text())
    names = sorted(im["file_name"] for im in d["images"])[:k]
    bad = write_corrupt_images(root / "scratch")
    victims = []
    for name, src in zip(names, bad * 2):
        dst = root / "images" / "val" / name
        dst.write_bytes(src.read_bytes())
        victims.append(dst)
    return victims


def test_eval_skips_counts_and_exits_1(tiny_onnx, data, tmp_path, capsys) -> None:
    victims = _damage(data, 1)
    summary = tmp_path / "s.json"
    assert main(["eval", "--model", str(tiny_onnx), "--data", str(data), "--quiet", "--summary", str(summary)]) == 1
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert lines[0] == f"detnet-trt eval: warning: cannot read image {victims[0]}: empty file; skipped"
    assert lines[-1] == f"detnet-trt eval: error: 1 image(s) could not be read and were skipped: {victims[0]} (empty file)"
    assert "(3 images," in cap.out  # 4 val images, 1 skipped
    rec = json.loads(summary.read_text())
    assert rec["num_images"] == 3 and rec["skipped"] == [{"image": str(victims[0]), "error": "empty file"}]


def test_eval_api_records_the_skipped_and_none_readable_is_an_error(tiny_onnx, data) -> None:
    victims = _damage(data, 4)
    ann, images = data / "annotations" / "instances_val.json", data / "images" / "val"
    seen = []
    with pytest.raises(InputError, match="no image of .* could be read"):
        evaluate(tiny_onnx, ann, images, EvalOptions(progress=False), skipped=SkippedImages(on_skip=lambda p, w: seen.append(p)))
    assert sorted(seen) == sorted(map(str, victims))
