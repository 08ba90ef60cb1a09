"""The CUDA layer's status check and its errors without a GPU (buffers and streams are exercised
by the ``gpu`` tests)."""

from __future__ import annotations

import ctypes

import pytest

from detnet_trt.trt import cuda
from detnet_trt.trt.cuda import CudaError, check


@pytest.mark.parametrize("ok", [0, True, "an object", 1.5])
def test_check_passes_success_through(ok) -> None:
    assert check(ok, "step") == ok


@pytest.mark.parametrize(("status", "match"), [(None, "step failed$"), (False, "step failed$"),
                                               (2, r"step failed: CUDA error 2"), (999, r"CUDA error 999")])
def test_check_raises_on_failure(status, match) -> None:
    with pytest.raises(CudaError, match=match):
        check(status, "step")


def _have_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(_have_driver(), reason="an NVIDIA driver is installed")
def test_device_info_without_driver(monkeypatch) -> None:
    monkeypatch.setattr(cuda, "_libcuda", None)
    with pytest.raises(CudaError, match=r"libcuda\.so\.1 cannot be loaded.*NVIDIA driver"):
        cuda.device_info(0)
