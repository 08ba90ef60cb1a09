"""TensorRT plugin libraries (``.so``) loaded explicitly, shared by the engine build and the runtime.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import DetnetError


class PluginError(DetnetError):
    """A plugin library is missing or cannot be loaded, or graph surgery failed."""


def load_plugin_libraries(paths: Iterable[str | os.PathLike[str]]) -> list[ctypes.CDLL]:
    """Load TensorRT plugin libraries (``.so``) so their creators register; returns the handles.

    Raises :class:`PluginError` naming the file when it is missing or the loader refuses it
    (wrong architecture, missing dependency: the loader's message is included).
    """
    handles = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.is_file():
            raise PluginError(f"plugin library {p} not found", "check the --plugin path (a .so file)")
        try:
            handles.append(ctypes.CDLL(str(p.resolve()), mode=ctypes.RTLD_GLOBAL))
        except OSError as err:
            raise PluginError(
                f"plugin library {p} cannot be loaded: {err}",
                "build it for this machine's architecture and TensorRT version; check ldd on it",
            ) from None
    return handles
