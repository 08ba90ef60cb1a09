"""run_inference: annotated images + detections JSON, unreadable images skipped, no overwrites."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detnet_trt.apps.infer import JSON_NAME, InferOptions, collect_images, read_image, run_inference
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import InputError, OutputExistsError
from detnet_trt.runtime.backends.torch_backend import TorchBackend


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(240, 320), (300, 200), (128, 128)]):
        cv2.imwrite(str(d / f"img{i}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "grey.png"), rng.integers(0, 256, (100, 150), dtype=np.uint8))
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "notes.txt").write_text("not an image, and not picked from a folder")
    return d


def test_writes_annotated_images_and_json(tiny_onnx, images, tmp_path) -> None:
    errors = []
    out = tmp_path / "out"
    res = run_inference(
        tiny_onnx, [images, tmp_path / "missing.jpg"], out, InferOptions(progress=False), PostprocessConfig(conf=0.5),
        on_error=lambda p, r: errors.append(p.name),
    )
    assert sorted(p.name for p in res.outputs) == ["grey.png", "img0.jpg", "img1.jpg", "img2.jpg"]
    assert sorted(errors) == ["broken.jpg", "missing.jpg"]
    assert sorted(f.split("/")[-1] for f, _ in res.failed) == ["broken.jpg", "missing.jpg"]
    doc = json.loads((out / JSON_NAME).read_text())
    assert doc["class_names"] == ["circle", "square", "triangle"] and doc["conf"] == 0.5
    assert {r["output"] for r in doc["images"]} == {"grey.png", "img0.jpg", "img1.jpg", "img2.jpg"}
    assert {f["file"].split("/")[-1] for f in doc["failed"]} == {"broken.jpg", "missing.jpg"}
    for rec in doc["images"]:
        src = cv2.imread(rec["file"])
        drawn = cv2.imread(str(out / rec["output"]))
        assert drawn.shape == src.shape == (rec["height"], rec["width"], 3)
        for det in rec["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= rec["width"] and 0 <= y1 <= y2 <= rec["height"]
            assert det["score"] >= 0.5 and det["class_name"] in doc["class_names"]
        if rec["detections"]:  # boxes were drawn
            assert np.abs(drawn.astype(int) - src.astype(int)).max() > 100
    assert sum(len(r["detections"]) for r in doc["images"]) > 0


def test_refuses_to_overwrite_then_force(tiny_onnx, images, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.jpg").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="img0.jpg"):
        run_inference(tiny_onnx, [images / "img0.jpg", images / "img1.jpg"], out, InferOptions(progress=False))
    assert sorted(p.name for p in out.iterdir()) == ["img0.jpg"]  # nothing written before the check
    res = run_inference(tiny_onnx, [images / "img0.jpg"], out, InferOptions(force=True, progress=False))
    assert res.outputs == [out / "img0.jpg"] and (out / "img0.jpg").read_bytes() != b"keep me"


def test_batches_and_backends_agree(tiny_checkpoint, tiny_onnx, images, tmp_path) -> None:
    files = sorted(images.glob("img*.jpg"))
    post = PostprocessConfig(conf=0.5)
    one = run_inference(tiny_onnx, files, tmp_path / "a", InferOptions(batch=1, progress=False), post)
    two = run_inference(tiny_onnx, files, tmp_path / "b", InferOptions(batch=2, progress=False), post)
    pt = run_inference(TorchBackend(tiny_checkpoint), files, tmp_path / "c", InferOptions(batch=3, progress=False), post)
    for f in map(str, files):
        np.testing.assert_allclose(one.detections[f].boxes, two.detections[f].boxes, atol=1e-3)
        np.testing.assert_allclose(one.detections[f].scores, pt.detections[f].scores, rtol=1e-4)


def test_duplicate_names_and_collection(tiny_onnx, images, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "img0.jpg"), np.zeros((50, 60, 3), np.uint8))
    found = collect_images([images, other])
    assert [p.name for p in found] == ["broken.jpg", "grey.png", "img0.jpg", "img1.jpg", "img2.jpg", "img0.jpg"]
    res = run_inference(tiny_onnx, [images / "img0.jpg", other / "img0.jpg"], tmp_path / "o", InferOptions(progress=False))
    assert [p.name for p in res.outputs] == ["img0.jpg", "img0_1.jpg"]
    assert read_image(images / "grey.png").shape == (100, 150, 3)


def test_bad_requests(tiny_onnx, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found"):
        run_inference(tiny_onnx, [empty], tmp_path / "o", InferOptions(progress=False))
    with pytest.raises(InputError, match="iou"):
        run_inference(tiny_onnx, [empty], tmp_path / "o", InferOptions(progress=False), PostprocessConfig(iou=0.0))
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "nothing.png")
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="is a file"):
        run_inference(tiny_onnx, [img], img, InferOptions(progress=False))


def test_infer_options_name_the_flag() -> None:
    with pytest.raises(InputError, match="--batch"):
        InferOptions(batch=0)
    assert InferOptions() == InferOptions(batch=1, force=False, progress=True)
