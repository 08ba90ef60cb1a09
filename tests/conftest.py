"""Shared fixtures and the ``gpu`` marker.

Tests marked ``gpu`` need a CUDA device *and* TensorRT + pycuda; they are skipped (never faked)
where any of these is missing.
"""

from __future__ import annotations

import importlib.util

import pytest


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
