"""``detnet-trt serve``: any backend of the package inside NVIDIA PyTriton's real ``tritonserver``.

PyTriton starts the ``tritonserver`` binary it ships, with HTTP and gRPC (KServe v2 protocol)
endpoints and the Prometheus metrics endpoint, and forwards each (dynamically batched) request
batch to a Python function in this process. That function runs the package's backend and its
post-processing (:func:`~detnet_trt.runtime.postprocess.postprocess`, what the Detector runs), so results
are exactly those of a local run. The request/response contract is :mod:`detnet_trt.serving.triton.protocol`, the same as the
``export-triton`` ensemble: one client for both.

Triton checks every request's dtype and shape against the model config before it is batched, so a
malformed request is answered with an error on its own and never spoils the batch it would have
joined. Servers bind to loopback unless ``allow_remote`` is given.

PyTriton's Python-backend stub is linked against ``libpython3.X.so`` and, under an interpreter
that is not the system's (pyenv, conda, a custom build), would load the system's copy and fail
(``'_thread.RLock' object has no attribute '_recursion_count'``). :func:`_stub_library_env` puts
the running interpreter's ``LIBDIR`` first on ``LD_LIBRARY_PATH`` while the server process is
spawned (it inherits the environment at that moment) and restores it right after; nothing is
changed at import time.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import os
import socket
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.config import PostprocessConfig
from ...core.errors import DetnetError, InputError, MissingDependencyError
from ...runtime.backends.base import Backend
from ...runtime.letterbox import LetterboxInfo, letterbox_geometry
from ...runtime.postprocess import postprocess
from . import protocol

LOGGER = logging.getLogger(__name__)
_ENV_LOCK = threading.Lock()


def _require_pytriton() -> None:
    try:
        import pytriton  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "`detnet-trt serve` needs NVIDIA PyTriton", "pip install 'detnet-trt[triton]' (nvidia-pytriton)"
        ) from None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback bind address unless the user asked for it explicitly."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(
            f"refusing to bind to {host}: that exposes the server beyond this machine",
            "pass --allow-remote to serve on a network interface (the server has no authentication)",
        )


@dataclass(frozen=True)
class ServeOptions:
    """Where and how ``serve`` serves; each field is the flag of that name (``http_port``: ``--port``).

    ``name``: the model name clients call; ``host``: the bind address of all three endpoints
    (loopback unless ``allow_remote``); ``max_batch``: the largest dynamic batch (clamped to the
    backend's); ``dynamic_batching`` off runs every request on its own; ``preferred_batch_sizes``
    and ``queue_delay_us``: Triton's dynamic batcher; ``log_verbose``: tritonserver's log level.
    """

    name: str = "detnet"
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    allow_remote: bool = False
    max_batch: int = 8
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = ()
    queue_delay_us: int = 1000
    log_verbose: int = 0

    def __post_init__(self) -> None:
        check_bind_host(self.host, self.allow_remote)
        for flag, port in (("--port", self.http_port), ("--grpc-port", self.grpc_port),
                           ("--metrics-port", self.metrics_port)):
            if not 1 <= port <= 65535:
                raise InputError(f"{flag} must be a TCP port in 1..65535, got {port}")
        if self.max_batch < 1:
            raise InputError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.queue_delay_us < 0:
            raise InputError(f"--queue-delay-us must be >= 0, got {self.queue_delay_us}")
        object.__setattr__(self, "preferred_batch_sizes", tuple(self.preferred_batch_sizes))


def _python_libdir() -> str | None:
    """The running interpreter's shared-library folder, when it holds its ``libpython``."""
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if libdir and soname and (Path(libdir) / str(soname)).exists():
        return str(libdir)
    return None


@contextlib.contextmanager
def _stub_library_env() -> Iterator[None]:
    """While spawning tritonserver: the running interpreter's LIBDIR first on LD_LIBRARY_PATH."""
    libdir = _python_libdir()
    if libdir is None:
        yield
        return
    with _ENV_LOCK:
        old = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = libdir if not old else f"{libdir}{os.pathsep}{old}"
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("LD_LIBRARY_PATH", None)
            else:
                os.environ["LD_LIBRARY_PATH"] = old


def stub_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for running the bundled ``tritonserver`` directly (see :func:`bundled_tritonserver`)."""
    env = dict(os.environ if base is None else base)
    libdir = _python_libdir()
    if libdir:
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = libdir if not old else f"{libdir}{os.pathsep}{old}"
    return env


def bundled_tritonserver(workdir: str | os.PathLike[str]) -> tuple[Path, Path, dict[str, str]]:
    """Lay out PyTriton's bundled ``tritonserver`` under ``workdir`` to run a model repository.

    Returns ``(executable, backend_directory, env)``. The bundle has the Python backend only
    (no ONNX Runtime or TensorRT backend), so it loads the Python-backend models of an
    ``export-triton`` repository; the stub for the running Python version is put in place as
    PyTriton does.
    """
    _require_pytriton()
    import shutil
    import sys

    from pytriton.utils.distribution import (  # type: ignore[import-untyped]
        get_libs_path,
        get_root_module_path,
        get_stub_path,
    )

    src = get_root_module_path() / "tritonserver"
    dst = Path(workdir) / "tritonserver"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("python_backend_stubs"))
    stub = get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}")
    shutil.copy(stub, dst / "backends" / "python" / "triton_python_backend_stub")
    env = stub_env()
    env["LD_LIBRARY_PATH"] = f"{env.get('LD_LIBRARY_PATH', '')}{os.pathsep}{get_libs_path()}".lstrip(os.pathsep)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return dst / "bin" / "tritonserver", dst / "backends", env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _infos(orig_size: np.ndarray, input_size: tuple[int, int]) -> list[LetterboxInfo | None]:
    return [
        letterbox_geometry((int(h), int(w)), input_size) if h > 0 and w > 0 else None
        for h, w in orig_size.reshape(-1, 2).tolist()
    ]


class DetnetTritonServer:
    """A PyTriton server running one backend as model ``name``; ``start()``/``stop()`` or ``with``.

    >>> with DetnetTritonServer("model.onnx", options=ServeOptions(http_port=8000)) as srv:
    ...     print(srv.http_url)          # 127.0.0.1:8000
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Backend,
        *,
        options: ServeOptions = ServeOptions(),
        post: PostprocessConfig = PostprocessConfig(),
    ) -> None:
        self.options, self.post = options, post
        self.name = options.name
        self.host = options.host
        self.ports = {"http": options.http_port, "grpc": options.grpc_port, "metrics": options.metrics_port}
        if isinstance(model, Backend):
            self.backend = model
        else:
            from ...runtime.backends import load_backend

            self.backend = load_backend(model)
        max_batch = options.max_batch
        if self.backend.max_batch is not None:
            max_batch = min(max_batch, self.backend.max_batch)
        self.max_batch = max_batch
        self.dynamic_batching = options.dynamic_batching
        self._triton: Any = None
        # batch size of each call, the most recent 100k (for tests and benchmarks; bounded for long runs)
        self.batches_seen: collections.deque[int] = collections.deque(maxlen=100_000)

    # --- endpoints -----------------------------------------------------------------------
    def _url(self, kind: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.ports[kind]}"

    @property
    def http_url(self) -> str:
        return self._url("http")

    @property
    def grpc_url(self) -> str:
        return self._url("grpc")

    @property
    def metrics_url(self) -> str:
        return f"http://{self._url('metrics')}/metrics"

    # --- inference -----------------------------------------------------------------------
    def _infer_batch(self, images: np.ndarray, orig_size: np.ndarray) -> dict[str, np.ndarray]:
        self.batches_seen.append(int(images.shape[0]))
        outputs = self.backend.infer(images)
        infos = _infos(orig_size, self.backend.meta.input_size)
        post = self.post
        dets = postprocess(outputs, infos, post.conf, post.iou, post.max_det)
        return protocol.pack_detections(dets, post.max_det)

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> DetnetTritonServer:
        """Open the backend, start tritonserver and wait until the model is ready."""
        _require_pytriton()
        from pytriton.decorators import batch  # type: ignore[import-untyped]
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # type: ignore[import-untyped]
        from pytriton.triton import Triton, TritonConfig  # type: ignore[import-untyped]

        if self._triton is not None:
            return self
        self.backend.open()
        meta = self.backend.meta
        config = TritonConfig(
            http_address=self.host,
            http_port=self.ports["http"],
            grpc_address=self.host,
            grpc_port=self.ports["grpc"],
            metrics_address=self.host,
            metrics_port=self.ports["metrics"],
            allow_metrics=True,
            allow_cpu_metrics=True,
            log_verbose=self.options.log_verbose,
            exit_timeout_secs=5,
        )
        batcher = (
            DynamicBatcher(
                max_queue_delay_microseconds=self.options.queue_delay_us,
                preferred_batch_size=[b for b in self.options.preferred_batch_sizes if b <= self.max_batch] or None,
            )
            if self.dynamic_batching
            else None
        )
        infer = batch(lambda images, orig_size: self._infer_batch(images, orig_size))
        triton = Triton(config=config)
        try:
            triton.bind(
                model_name=self.name,
                infer_func=infer,
                inputs=[
                    Tensor(name=protocol.IMAGES, dtype=np.uint8, shape=tuple(meta.input_shape()[1:])),
                    Tensor(name=protocol.ORIG_SIZE, dtype=np.int32, shape=(2,)),
                ],
                outputs=[
                    Tensor(name=protocol.DET_BOXES, dtype=np.float32, shape=(self.post.max_det, 4)),
                    Tensor(name=protocol.DET_SCORES, dtype=np.float32, shape=(self.post.max_det,)),
                    Tensor(name=protocol.DET_CLASS_IDS, dtype=np.int32, shape=(self.post.max_det,)),
                    Tensor(name=protocol.NUM_DETS, dtype=np.int32, shape=(1,)),
                ],
                config=ModelConfig(max_batch_size=self.max_batch, batcher=batcher),
                strict=True,
            )
            with _stub_library_env():
                triton.run()
        except BaseException:
            triton.stop()
            self.backend.close()
            raise
        self._triton = triton
        return self

    def wait(self, poll_s: float = 1.0) -> None:
        """Block until Ctrl+C (returns) or until tritonserver dies (raises); then stop."""
        if self._triton is None:
            self.start()
        try:
            while self._triton is not None and self._triton.is_alive():
                time.sleep(poll_s)
            raise DetnetError(
                "tritonserver or its model stopped unexpectedly", "see the server log above; restart `detnet-trt serve`"
            )
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop tritonserver (in-flight requests get up to 5 s) and close the backend. Idempotent."""
        triton, self._triton = self._triton, None
        if triton is not None:
            triton.stop()
        self.backend.close()

    def __enter__(self) -> DetnetTritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model: str | os.PathLike[str] | Backend,
    *,
    options: ServeOptions = ServeOptions(),
    post: PostprocessConfig = PostprocessConfig(),
) -> None:
    """Run :class:`DetnetTritonServer` in the foreground until Ctrl+C (``detnet-trt serve``)."""
    import signal

    def _on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM (docker stop, systemd, kubelet) stops as cleanly as Ctrl+C

    srv = DetnetTritonServer(model, options=options, post=post)
    in_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _on_term) if in_main else None
    try:
        srv.start()
        print(
            f"serving model '{srv.name}' ({srv.backend.name}, batch <= {srv.max_batch}, dynamic batching "
            f"{'on' if srv.dynamic_batching else 'off'}): HTTP {srv.http_url}, gRPC {srv.grpc_url}, "
            f"metrics {srv.metrics_url}; Ctrl+C stops",
            flush=True,
        )
        srv.wait()
    except KeyboardInterrupt:  # during start-up
        pass
    finally:
        srv.stop()
        if in_main:
            signal.signal(signal.SIGTERM, old)
