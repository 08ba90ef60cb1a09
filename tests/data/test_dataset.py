"""Training dataset: letterbox geometry of targets, deterministic augmentation, flip, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detnet_trt.data.coco import CocoDataset, resolve_coco_dir
from detnet_trt.data.dataset import Augment, DetectionDataset, collate
from detnet_trt.data.synth import make_synth_dataset
from detnet_trt.runtime.letterbox import letterbox_geometry


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return make_synth_dataset(tmp_path_factory.mktemp("synth"), images=10, seed=3, size=(96, 128), progress=False)


def test_eval_samples_are_letterboxed_with_boxes_in_input_pixels(synth_dir):
    ds = DetectionDataset.from_dir(synth_dir, "train", (80, 80))
    coco = CocoDataset(*resolve_coco_dir(synth_dir, "train"))
    assert len(ds) == len(coco) == 8
    assert ds.class_names == coco.class_names
    for i in range(len(ds)):
        image, target = ds[i]
        item = coco[i]
        info = letterbox_geometry((96, 128), (80, 80))
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 80, 80)
        np.testing.assert_allclose(target["boxes"].numpy(), info.to_input(item.boxes), atol=1e-4)
        assert target["labels"].dtype == torch.int64
        np.testing.assert_array_equal(target["labels"].numpy(), item.labels)
        assert target["labels"].min() >= 0 and target["labels"].max() < len(ds.class_names)
        # the letterbox pads top and bottom (128 wide -> 60 high image in 80): padding rows are grey
        assert (image[:, : info.pad_y] == 114).all()


def test_augmentation_is_deterministic_per_epoch_and_index(synth_dir):
    ds = DetectionDataset.from_dir(synth_dir, "train", (96, 96), augment=Augment(), seed=7)
    ds.set_epoch(2)
    a_img, a_t = ds[3]
    b_img, b_t = ds[3]
    assert torch.equal(a_img, b_img) and torch.equal(a_t["boxes"], b_t["boxes"])
    other = DetectionDataset.from_dir(synth_dir, "train", (96, 96), augment=Augment(), seed=7)
    other.set_epoch(2)
    assert torch.equal(other[3][0], a_img)  # same in another process/worker
    ds.set_epoch(3)
    assert not torch.equal(ds[3][0], a_img)  # a new draw each epoch


def test_augmented_boxes_stay_inside_and_are_not_tiny(synth_dir):
    aug = Augment(scale=(0.3, 2.0))
    ds = DetectionDataset.from_dir(synth_dir, "train", (64, 96), augment=aug)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, t = ds[i]
            assert tuple(image.shape) == (3, 64, 96)
            b = t["boxes"].numpy()
            assert b.shape[1] == 4 and len(b) == len(t["labels"])
            assert (b[:, 0] >= 0).all() and (b[:, 2] <= 96).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 64).all()
            assert ((b[:, 2] - b[:, 0]) >= aug.min_size).all() and ((b[:, 3] - b[:, 1]) >= aug.min_size).all()


def test_horizontal_flip_mirrors_image_and_boxes(synth_dir):
    plain = DetectionDataset.from_dir(synth_dir, "train", (96, 128))
    flip_only = Augment(scale=(1.0, 1.0), translate=False, hflip=1.0, hsv=(0.0, 0.0, 0.0))
    flipped = DetectionDataset.from_dir(synth_dir, "train", (96, 128), augment=flip_only)
    img, t = plain[1]
    fimg, ft = flipped[1]
    assert torch.equal(fimg, img.flip(-1))
    b = t["boxes"]
    expect = torch.stack([128 - b[:, 2], b[:, 1], 128 - b[:, 0], b[:, 3]], 1)
    torch.testing.assert_close(ft["boxes"], expect)
    assert torch.equal(ft["labels"], t["labels"])


def test_colour_jitter_changes_pixels_not_boxes(synth_dir):
    jitter_only = Augment(scale=(1.0, 1.0), translate=False, hflip=0.0, hsv=(0.02, 0.7, 0.4))
    plain = DetectionDataset.from_dir(synth_dir, "train", (96, 128))
    jit = DetectionDataset.from_dir(synth_dir, "train", (96, 128), augment=jitter_only)
    img, t = plain[0]
    jimg, jt = jit[0]
    assert not torch.equal(img, jimg)
    torch.testing.assert_close(jt["boxes"], t["boxes"])


def test_collate_and_nhwc_layout(synth_dir):
    ds = DetectionDataset.from_dir(synth_dir, "val", (64, 64), layout="nhwc")
    images, targets = collate([ds[0], ds[1]])
    assert images.dtype == torch.uint8 and tuple(images.shape) == (2, 64, 64, 3)
    assert len(targets) == 2 and all(set(t) == {"boxes", "labels"} for t in targets)
