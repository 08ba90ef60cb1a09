"""``detnet-trt client``: send images to a Triton server with ``tritonclient``, get detections.

Works against ``detnet-trt serve`` and against a stock Triton serving an ``export-triton``
repository (both speak :mod:`detnet_trt.serving.triton.protocol`). The client reads the model's input
shape from the server's model config, letterboxes each image with the package's own
:func:`~detnet_trt.runtime.letterbox.letterbox_into`, sends ``images`` + ``orig_size`` and returns
:class:`~detnet_trt.runtime.postprocess.Detections` in original-image pixels.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import DetnetError, InputError, MissingDependencyError
from ...core.images import SkippedImages
from ...core.limits import MAX_BATCH
from ...runtime.letterbox import Letterboxer
from ...runtime.postprocess import Detections
from . import protocol


class ServerError(DetnetError):
    """The server could not be reached or answered a request with an error."""


def _client_module(protocol_name: str) -> Any:
    try:
        if protocol_name == "grpc":
            import tritonclient.grpc as mod  # type: ignore[import-untyped]
        else:
            import tritonclient.http as mod  # type: ignore[import-untyped]
    except ImportError:
        raise MissingDependencyError(
            "`detnet-trt client` needs tritonclient", "pip install 'detnet-trt[triton]' (tritonclient[http,grpc])"
        ) from None
    return mod


def split_url(url: str, protocol_name: str | None = None) -> tuple[str, str]:
    """``(HOST:PORT, protocol)`` of a ``--url``: a scheme (``http://``, ``grpc://``) is stripped and
    picks the protocol; without one, ``protocol_name`` (default http). A scheme that contradicts
    ``protocol_name``, ``https``, a path, or no port is refused in one line with the fix."""
    if protocol_name is not None and protocol_name not in ("http", "grpc"):
        raise InputError(f"protocol must be 'http' or 'grpc', got {protocol_name!r}")
    rest = url.strip()
    scheme = None
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "grpc"):
            raise InputError(
                f"--url {url}: scheme {scheme}:// is not supported (plain HTTP or gRPC only, no TLS)",
                "pass HOST:PORT, http://HOST:PORT or grpc://HOST:PORT",
            )
        if protocol_name is not None and protocol_name != scheme:
            raise InputError(
                f"--url {url} says {scheme} but --protocol is {protocol_name}", "drop one of them or make them agree"
            )
    rest = rest.rstrip("/")
    if "/" in rest:
        raise InputError(f"--url {url}: a path is not supported", "pass HOST:PORT (the server's address, no path)")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"--url {url}: expected HOST:PORT with a port in 1..65535", "e.g. --url 127.0.0.1:8000")
    return rest, scheme or protocol_name or "http"


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one a line (blank lines skipped); one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--labels {p}: no such file", "pass a text file with one class name a line")
    try:
        names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--labels {p}: cannot read it as UTF-8 text ({err})") from None
    if not names:
        raise InputError(f"--labels {p}: the file has no class names", "one class name a line")
    return names


class DetnetClient:
    """A connection to one detection model on a Triton server (HTTP or gRPC); ``close()`` or ``with``.

    ``url``: ``HOST:PORT``, or with a scheme (``http://``, ``grpc://``) that picks the protocol
    (see :func:`split_url`); ``protocol_name`` defaults to http.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        model: str = "detnet",
        protocol_name: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        url, protocol_name = split_url(url, protocol_name)
        self._mod = _client_module(protocol_name)
        self.protocol = protocol_name
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        try:
            if protocol_name == "http":
                self._client = self._mod.InferenceServerClient(
                    url, connection_timeout=timeout_s, network_timeout=timeout_s
                )
            else:
                self._client = self._mod.InferenceServerClient(url)
            cfg = (
                self._client.get_model_config(model, as_json=True)
                if protocol_name == "grpc"
                else self._client.get_model_config(model)
            )
        except Exception as err:  # noqa: BLE001 - connection refused, unknown model, ...
            self.close_quietly()
            raise ServerError(
                f"cannot get model '{model}' from {protocol_name}://{url}: {_message(err)}",
                "start it with `detnet-trt serve` or tritonserver, and check --url/--model",
            ) from None
        cfg = cfg["config"] if protocol_name == "grpc" and "config" in cfg else cfg
        self.config: dict[str, Any] = cfg
        self.class_names, self.input_dims, self.layout = _parse_config(cfg)
        h, w = (self.input_dims[1], self.input_dims[2]) if self.layout == "nchw" else self.input_dims[:2]
        self.input_size = (int(h), int(w))
        self.max_batch = min(MAX_BATCH, max(1, int(cfg.get("max_batch_size", 1) or 1)))  # the buffer's limit
        self.letterboxer = Letterboxer(self.input_size, self.layout, self.max_batch)

    def close_quietly(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):  # closing a dead connection must not mask the error
                client.close()

    def close(self) -> None:
        self.close_quietly()
        self._client = None

    def __enter__(self) -> DetnetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- raw requests --------------------------------------------------------------------
    def infer_raw(self, images: np.ndarray, orig_size: np.ndarray) -> dict[str, np.ndarray]:
        """Send already letterboxed ``images`` (batch) and ``orig_size`` (batch x 2); returns the
        response arrays. Any array is sent as given (dtype included), so tests can send bad ones."""
        return self.infer_named({protocol.IMAGES: images, protocol.ORIG_SIZE: orig_size})

    def infer_named(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send exactly the named input ``arrays`` (an input may be left out, for tests and load
        tests of malformed requests); returns the response arrays or raises :class:`ServerError`."""
        inputs = [self._tensor(name, array) for name, array in arrays.items()]
        outputs = [self._mod.InferRequestedOutput(n) for n in protocol.OUTPUTS]
        try:
            result = self._client.infer(self.model, inputs, outputs=outputs)
        except Exception as err:  # noqa: BLE001 - InferenceServerException and transport errors
            raise ServerError(f"{self.model} at {self.url}: {_message(err)}") from None
        return {n: result.as_numpy(n) for n in protocol.OUTPUTS}

    def _tensor(self, name: str, array: np.ndarray) -> Any:
        from tritonclient.utils import np_to_triton_dtype  # type: ignore[import-untyped]

        t = self._mod.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        t.set_data_from_numpy(np.ascontiguousarray(array))
        return t

    # --- frames in, detections out -------------------------------------------------------
    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """BGR frames of any size -> one :class:`Detections` per frame, in frame pixels."""
        out: list[Detections] = []
        for i in range(0, len(frames), self.max_batch):
            chunk = list(frames[i : i + self.max_batch])
            batch, _ = self.letterboxer.fill(chunk)
            sizes = np.asarray([f.shape[:2] for f in chunk], np.int32)
            res = self.infer_raw(batch, sizes)
            out.extend(Detections(b, s, c) for b, s, c in protocol.unpack_detections(res))
        return out


def _message(err: Exception) -> str:
    message = getattr(err, "message", None)  # tritonclient's InferenceServerException.message()
    msg = message() if callable(message) else str(err)
    return " ".join(str(msg).split())[:2000]


def _parse_config(cfg: dict[str, Any]) -> tuple[list[str] | None, list[int], str]:
    """Class names (if the config carries them), per-image input dims and layout from a model config."""
    images = next((i for i in cfg.get("input", []) if i.get("name") == protocol.IMAGES), None)
    if images is None:
        raise ServerError(f"model '{cfg.get('name')}' has no '{protocol.IMAGES}' input: not a detnet-trt model")
    dims = [int(d) for d in images.get("dims", [])]
    if len(dims) != 3 or 3 not in (dims[0], dims[2]):
        raise ServerError(
            f"model '{cfg.get('name')}' input '{protocol.IMAGES}' has dims {dims}, expected 3xHxW or HxWx3"
        )
    params = {k: v.get("string_value", "") for k, v in (cfg.get("parameters") or {}).items()}
    layout = params.get("layout") or ("nchw" if dims[0] == 3 else "nhwc")
    names = json.loads(params["class_names"]) if params.get("class_names") else None
    return names, dims, layout


def run_client(
    images: Sequence[str | os.PathLike[str]],
    *,
    url: str = "127.0.0.1:8000",
    model: str = "detnet",
    protocol_name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    force: bool = False,
    skipped: SkippedImages | None = None,
) -> list[dict[str, Any]]:
    """``detnet-trt client``: detections of each image as JSON records (printed by the CLI); with
    ``out_dir``, also ``<stem>.json`` and an annotated ``<stem>.jpg`` per image there. An image that
    cannot be read is skipped before anything is sent (recorded in ``skipped``); none readable is an
    :class:`~detnet_trt.core.errors.InputError`."""
    import cv2

    from ...apps.visualize import draw_detections
    from ...core.fileio import atomic_write_bytes, atomic_write_text, check_writable

    split_url(url, protocol_name)  # a bad --url, --labels or image fails before any connection
    label_names = read_labels(labels) if labels is not None else None
    skipped = skipped if skipped is not None else SkippedImages()
    read = [(p, frame) for p in images if (frame := skipped.read(p)) is not None]
    if not read:
        raise skipped.none_readable(", ".join(str(p) for p in images[:3]) + (" ..." if len(images) > 3 else ""))
    images, frames = [p for p, _ in read], [f for _, f in read]
    with DetnetClient(url, model, protocol_name) as client:
        names = label_names if label_names is not None else client.class_names
        dets = client.detect(frames)
    records = [{"image": str(p), "detections": d.to_list(names)} for p, d in zip(images, dets)]
    if out_dir is not None:
        out = Path(out_dir)
        for p, frame, d, rec in zip(images, frames, dets, records):
            stem = Path(p).stem
            check_writable(out / f"{stem}.json", force)
            check_writable(out / f"{stem}.jpg", force)
            atomic_write_text(out / f"{stem}.json", json.dumps(rec, indent=1) + "\n")
            ok, buf = cv2.imencode(".jpg", draw_detections(frame, d, names))
            if ok:
                atomic_write_bytes(out / f"{stem}.jpg", buf.tobytes())
    return records
