"""The metadata sidecar of a TensorRT engine: ``<engine>.json`` beside ``<engine>``.

An engine plan only runs with the TensorRT version and GPU it was built for. The sidecar records
them with the model's :class:`~detnet_trt.core.meta.ModelMeta` (input size and layout, classes,
precision), the hashes of the ONNX file and calibration set it came from, and the build options,
so that loading it elsewhere fails with a message naming both sides and the rebuild command.
The recorded ``engine_sha256`` is verified (:func:`verify_engine`, :func:`verify_engine_bytes`)
before an engine is deserialized or packaged: a damaged plan is refused, not run.
No TensorRT needed here.
"""

from __future__ import annotations

import json
import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IncompatibleError, ModelFileError
from .fileio import atomic_write_text, sha256_bytes, sha256_file
from .meta import ModelMeta

SIDECAR_FORMAT = "detnet_trt.engine/1"


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


@dataclass
class EngineInfo:
    """Everything recorded about one engine build."""

    meta: ModelMeta
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    onnx_sha256: str
    calib_sha256: str = ""
    engine_sha256: str = ""
    build: dict[str, Any] = field(default_factory=dict)  # options: precision, batch, dla, source, ...

    @property
    def batch_range(self) -> tuple[int, int, int]:
        b = self.build.get("batch") or (1, 1, 1)
        return int(b[0]), int(b[1]), int(b[2])

    def rebuild_command(self, engine: str | os.PathLike[str]) -> str:
        """The ``detnet-trt build`` command that makes this engine again on the running machine."""
        b = self.build
        args = ["detnet-trt", "build", str(b.get("source") or b.get("onnx") or "MODEL.onnx"),
                f"--{self.meta.precision}"]
        if b.get("calib"):
            args += ["--calib", str(b["calib"])]
        lo, opt, hi = self.batch_range
        args += ["--batch", f"{lo},{opt},{hi}"]
        if b.get("nms") == "efficient":
            args += ["--nms", "efficient"]
        if b.get("dla_core") is not None:
            args += ["--dla", str(b["dla_core"])]
        for lib in b.get("plugins") or []:
            args += ["--plugin", str(lib)]
        args += ["-o", str(engine), "--force"]
        return shlex.join(args)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "meta": self.meta.to_dict(),
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "onnx_sha256": self.onnx_sha256,
            "calib_sha256": self.calib_sha256,
            "engine_sha256": self.engine_sha256,
            "build": self.build,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineInfo:
        cc = d["compute_capability"]
        return cls(
            meta=ModelMeta.from_dict(d["meta"]),
            tensorrt_version=str(d["tensorrt_version"]),
            gpu_name=str(d["gpu_name"]),
            compute_capability=(int(cc[0]), int(cc[1])),
            onnx_sha256=str(d.get("onnx_sha256", "")),
            calib_sha256=str(d.get("calib_sha256", "")),
            engine_sha256=str(d.get("engine_sha256", "")),
            build=dict(d.get("build") or {}),
        )


def write_sidecar(engine: str | os.PathLike[str], info: EngineInfo, force: bool = True) -> Path:
    path = sidecar_path(engine)
    atomic_write_text(path, json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n", force=force)
    return path


def read_sidecar(engine: str | os.PathLike[str]) -> EngineInfo:
    """The sidecar of ``engine``; :class:`ModelFileError` naming the file if missing or malformed."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelFileError(
            f"{engine}: no metadata sidecar {path.name} beside the engine",
            "build engines with `detnet-trt build`, which writes it; copy it along with the engine",
        )
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {SIDECAR_FORMAT!r}")
        return EngineInfo.from_dict(d)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ModelFileError(f"{path}: not a detnet-trt engine sidecar ({err})", "rebuild the engine") from None


def verify_engine_bytes(engine: str | os.PathLike[str], data: bytes, info: EngineInfo) -> None:
    """:class:`ModelFileError` when ``data`` (the engine's bytes) does not hash to the sidecar's
    ``engine_sha256``; sidecars that record none are not verified."""
    _check_engine_hash(engine, sha256_bytes(data), info)


def verify_engine(engine: str | os.PathLike[str], info: EngineInfo | None = None) -> EngineInfo:
    """Read ``engine``'s sidecar (unless given) and verify the engine file against it; returns it."""
    info = read_sidecar(engine) if info is None else info
    if info.engine_sha256:
        _check_engine_hash(engine, sha256_file(engine), info)
    return info


def _check_engine_hash(engine: str | os.PathLike[str], got: str, info: EngineInfo) -> None:
    want = info.engine_sha256
    if want and got != want:
        raise ModelFileError(
            f"engine {engine} is corrupt or not the one its sidecar describes: it hashes to sha256 {got[:12]}, "
            f"the sidecar records {want[:12]}",
            "copy the engine and its .json together again, or rebuild it: " + info.rebuild_command(engine),
        )


def check_compatible(
    info: EngineInfo,
    engine: str | os.PathLike[str],
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
) -> None:
    """Refuse an engine built for another TensorRT version or GPU architecture.

    TensorRT plans are tied to the exact TensorRT version and to the GPU's compute capability:
    either differing raises :class:`IncompatibleError` naming both sides and the rebuild command.
    The same compute capability under another GPU name (e.g. two Ampere boards) runs, but may
    not be tuned for it: a warning.
    """
    problems = []
    if info.tensorrt_version != tensorrt_version:
        problems.append(f"built with TensorRT {info.tensorrt_version}, running TensorRT {tensorrt_version}")
    if tuple(info.compute_capability) != tuple(compute_capability):
        problems.append(
            f"built for {info.gpu_name} (compute capability {_cc(info.compute_capability)}), "
            f"running on {gpu_name} (compute capability {_cc(compute_capability)})"
        )
    if problems:
        raise IncompatibleError(
            f"{engine}: " + "; ".join(problems),
            f"rebuild it here: {info.rebuild_command(engine)}",
        )
    if info.gpu_name != gpu_name:
        warnings.warn(
            f"{engine} was built on {info.gpu_name} and runs on {gpu_name} (same compute capability "
            f"{_cc(compute_capability)}); rebuild for best speed: {info.rebuild_command(engine)}",
            stacklevel=2,
        )


def _cc(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"
