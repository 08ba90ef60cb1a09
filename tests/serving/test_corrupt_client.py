"""``client`` with a corrupt image: named, skipped before anything is sent, counted, exit 1; none
readable is exit 2 without connecting (detnet_trt/core/images.py)."""

from __future__ import annotations

import cv2
import numpy as np
from corrupt import write_corrupt_images

from detnet_trt.cli import main
from detnet_trt.runtime.postprocess import Detections
from detnet_trt.serving.triton import client as client_mod


class _FakeClient:
    """Stands in for the server: what run_client sends, and empty detections back."""

    sent: list[int] = []

    def __init__(self, url, model, protocol_name) -> None:
        self.class_names = ["circle", "square", "triangle"]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def detect(self, frames):
        _FakeClient.sent.append(len(frames))
        return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
                for _ in frames]


def test_client_skips_counts_and_exits_1(tmp_path, monkeypatch, capsys) -> None:
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((40, 40, 3), 90, np.uint8))
    bad = write_corrupt_images(tmp_path / "bad")
    monkeypatch.setattr(client_mod, "DetnetClient", _FakeClient)
    _FakeClient.sent = []
    assert main(["client", str(good), *map(str, bad)]) == 1
    cap = capsys.readouterr()
    assert _FakeClient.sent == [1] and cap.out.count('"image"') == 1
    lines = cap.err.strip().splitlines()
    assert len(lines) == 4 and all("warning: cannot read image" in ln for ln in lines[:3])
    assert lines[-1].startswith("detnet-trt client: error: 3 image(s) could not be read and were skipped: ")


def test_client_none_readable_is_exit_2_without_connecting(tmp_path, capsys) -> None:
    bad = write_corrupt_images(tmp_path)
    assert main(["client", *map(str, bad), "--url", "127.0.0.1:9"]) == 2  # nothing listens there: not reached
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("detnet-trt client: error: no image of ")
