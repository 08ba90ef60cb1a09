"""The process's one TensorRT logger, and TensorRT's bundled plugins registered with it once.

TensorRT keeps the pointer of the logger a ``Runtime`` / ``Builder`` was created with (and
``init_libnvinfer_plugins`` the one it was given) for as long as the objects made from them
live, and, with plugins, past that: a logger made per backend and dropped at ``close()`` leaves
TensorRT holding a dead pointer. So, as Polygraphy does (``backend/trt/util.py:get_trt_logger``),
one ``trt.Logger`` is made on first use and kept for the life of the process. ``verbose=True``
lowers its threshold to VERBOSE for everything that follows (it is never raised again: it is one
logger for everyone).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import compat

if TYPE_CHECKING:
    import tensorrt as trt

_lock = threading.Lock()
_logger: trt.Logger | None = None
_plugins: bool | None = None


def get_logger(verbose: bool = False) -> trt.Logger:
    """The process-wide ``trt.Logger`` (WARNING, or VERBOSE once anyone asked for it)."""
    import tensorrt as trt

    global _logger
    with _lock:
        if _logger is None:
            _logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        elif verbose:
            _logger.min_severity = trt.Logger.VERBOSE
        return _logger


def register_plugins(verbose: bool = False) -> tuple[trt.Logger, bool]:
    """The logger, and whether TensorRT's bundled plugins (EfficientNMS_TRT, ...) are registered
    with it; ``init_libnvinfer_plugins`` runs once per process."""
    global _plugins
    logger = get_logger(verbose)
    with _lock:
        if _plugins is None:
            _plugins = compat.init_plugins(logger)
        return logger, _plugins
