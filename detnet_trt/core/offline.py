"""Nothing at run time reaches the network: the one way the package imports ONNX Runtime.

ONNX Runtime 1.29 and newer send telemetry from Linux too (they resolve
``mobile.events.data.microsoft.com`` within seconds of a session starting) unless
``ORT_DISABLE_TELEMETRY=1`` is in the environment when ONNX Runtime is first imported; the
decision is latched for the process. :func:`import_ort` sets it (unless the user set it either
way) before that import, and also calls ``disable_telemetry_events()`` for a process that
imported ONNX Runtime earlier. Every ONNX Runtime import in the package goes through here
(``tests/test_no_network.py`` checks both the rule and the result).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def import_ort(module: str = "onnxruntime") -> ModuleType:
    """``onnxruntime`` (or a submodule such as ``onnxruntime.quantization``) with its telemetry off."""
    if not (module == "onnxruntime" or module.startswith("onnxruntime.")):
        raise ValueError(f"not an ONNX Runtime module: {module!r}")
    os.environ.setdefault(TELEMETRY_ENV, "1")
    ort = importlib.import_module("onnxruntime")
    disable = getattr(ort, "disable_telemetry_events", None)
    if disable is not None and os.environ.get(TELEMETRY_ENV) == "1":
        disable()
    return ort if module == "onnxruntime" else importlib.import_module(module)
