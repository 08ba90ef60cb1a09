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
import errno
import ipaddress
import logging
import os
import socket
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.config import PostprocessConfig
from ...core.errors import DetnetError, InputError, MissingDependencyError
from ...core.limits import BATCH, QUEUE_DELAY_US, check_ranges
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
    """Refuse what the bundled tritonserver cannot bind as asked, and a non-loopback bind address
    unless the user asked for it explicitly.

    Only IPv4 literals and ``localhost`` are accepted: PyTriton 0.7 builds ``http://HOST:PORT``
    URLs that cannot hold an IPv6 address (``::1`` failed with a traceback), and tritonserver's
    HTTP endpoint parses its address with ``inet_addr``, so a host name other than ``localhost``
    would bind ``255.255.255.255`` rather than what was asked (``localhost`` is bound as 127.0.0.1).
    """
    if ":" in host:
        raise InputError(
            f"--host {host}: IPv6 addresses cannot be served (PyTriton 0.7 and its tritonserver bind IPv4 only)",
            "use --host 127.0.0.1 (or localhost) for loopback",
        )
    if host != "localhost":
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InputError(
                f"--host {host!r} is not an IPv4 address (tritonserver binds numeric addresses only)",
                "pass an address such as 127.0.0.1, localhost, or 0.0.0.0 with --allow-remote",
            ) from None
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
    and ``queue_delay_us``: Triton's dynamic batcher; ``log_verbose``: tritonserver's log level;
    ``start_timeout_s``: how long ``start()`` waits for the model to be ready (no flag).
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
    start_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        check_bind_host(self.host, self.allow_remote)
        seen: dict[int, str] = {}
        for flag, port in self.port_flags():
            if not 1 <= port <= 65535:
                raise InputError(f"{flag} must be a TCP port in 1..65535, got {port}")
            if port in seen:
                raise InputError(
                    f"{seen[port]} and {flag} are both {port}: HTTP, gRPC and metrics need three different ports",
                    f"choose another {flag}",
                )
            seen[port] = flag
        if self.max_batch < 1:
            raise InputError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.queue_delay_us < 0:
            raise InputError(f"--queue-delay-us must be >= 0, got {self.queue_delay_us}")
        check_ranges(("--max-batch", BATCH, self.max_batch), ("--queue-delay-us", QUEUE_DELAY_US, self.queue_delay_us),
                     *(("preferred batch size", BATCH, b) for b in self.preferred_batch_sizes))
        if self.start_timeout_s <= 0:
            raise InputError(f"start_timeout_s must be > 0, got {self.start_timeout_s}")
        object.__setattr__(self, "preferred_batch_sizes", tuple(self.preferred_batch_sizes))

    def port_flags(self) -> tuple[tuple[str, int], ...]:
        """``(flag, port)`` of the HTTP, gRPC and metrics endpoints."""
        return (("--port", self.http_port), ("--grpc-port", self.grpc_port), ("--metrics-port", self.metrics_port))

    @property
    def bind_address(self) -> str:
        """The numeric address tritonserver is given (``localhost`` is 127.0.0.1, see :func:`check_bind_host`)."""
        return "127.0.0.1" if self.host == "localhost" else self.host


def check_ports_free(host: str, ports: tuple[tuple[str, int], ...]) -> None:
    """Refuse, naming the flag, a port that another process already listens on at ``host``.

    Each port is bound here, briefly, as tritonserver will bind it. ``SO_REUSEADDR`` is set as
    servers (tritonserver included) set it, so a port left in TIME_WAIT by a server that just
    stopped is not refused; on Linux a port that anyone *listens* on still fails to bind, whether
    that listener is on this address or on 0.0.0.0. Without this check tritonserver's own bind
    failure went unnoticed and PyTriton probed the other server on that port for two minutes.
    """
    addr = "127.0.0.1" if host == "localhost" else host
    for flag, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if os.name == "posix":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError as err:
                reason = "is already in use" if err.errno == errno.EADDRINUSE else f"cannot be bound ({err.strerror})"
                raise InputError(
                    f"{flag} {port}: {addr}:{port} {reason}",
                    f"stop the process that holds it or choose a free port with {flag}",
                ) from None


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


# tritonserver lines that are no problem: the first two on a host without an NVIDIA driver only,
# the last one on every host (see _quiet_known_noise)
_CPU_HOST_NOISE = (
    "CudaDriverHelper has not been initialized",  # CudaBlockManager::Create in a GPU build, no driver
    "Unable to allocate pinned system memory",  # the pinned pool needs CUDA (avoided: pool size 0)
)
_ANY_HOST_NOISE = (
    # Triton 2.51 logs this at E level whenever a model is loaded with a config override, which is
    # how PyTriton loads every model; the load succeeds (readiness is checked on our own child)
    "Failed to set config modification time: model_config_content_name_ is empty",
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _has_gpu() -> bool:
    """Whether an NVIDIA driver is present (its device node or NVML library), without loading CUDA."""
    if Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists():
        return True
    import ctypes.util

    return ctypes.util.find_library("nvidia-ml") is not None


def _http_ok(url: str, timeout_s: float) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except OSError:  # refused, timed out, HTTP 4xx/5xx
        return False


def _child_pid(child: Any) -> int | None:
    pid = getattr(getattr(child, "_tritonserver_running_cmd", None), "pid", None)
    return int(pid) if isinstance(pid, int) else None


def _alive(child: Any, pid: int | None) -> bool:
    """Whether tritonserver runs: its /proc state (not a zombie), else PyTriton's own check."""
    if pid is not None and Path("/proc").is_dir():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    return child is not None and bool(child.is_alive())


def _exit_code(child: Any) -> str:
    cmd = getattr(child, "_tritonserver_running_cmd", None)
    code = getattr(getattr(cmd, "process", None), "exit_code", None)
    return f" (exit code {code})" if isinstance(code, int) else ""


def _last_error_line(child: Any) -> str:
    """The last error line of tritonserver's log (``E...`` / ``error:``), else its last line."""
    try:
        lines = [ln.strip() for ln in str(child.logs()).splitlines() if ln.strip()]
    except Exception as err:  # noqa: BLE001 - logs are a courtesy
        return f"no log ({err})"
    errors = [ln for ln in lines if ln[:1] == "E" and ln[1:2].isdigit() or "error" in ln.lower()]
    errors = [ln for ln in errors if "NVML" not in ln and not is_known_noise(ln, gpu=False)] or errors
    return " ".join((errors or lines or ["no log"])[-1].split())[:500]


_LOG_KEEP_LINES = 10_000  # lines of tritonserver's log kept for error messages (PyTriton keeps all)


def is_known_noise(line: str, gpu: bool) -> bool:
    """Whether a tritonserver log line is one of the known harmless messages (:data:`_CPU_HOST_NOISE`
    without a GPU, :data:`_ANY_HOST_NOISE` always); every other line, errors included, is shown."""
    return any(n in line for n in _ANY_HOST_NOISE) or (not gpu and any(n in line for n in _CPU_HOST_NOISE))


def _quiet_known_noise(triton: Any, gpu: bool) -> None:
    """Before tritonserver starts: on a host without a GPU, no pinned-memory pool (it needs CUDA;
    asking for one only earns a warning), and the known harmless lines left out of what is
    printed. They stay in the recorded log (``child.logs()``: its last 10,000 lines; PyTriton's
    own keeps it all in one string, copied at every character, growing for as long as the server
    runs); nothing else is filtered.

    PyTriton 0.7 reads the child's output one character at a time and hands each to
    ``TritonServer._record_logs``, which prints it and appends it to ``_tritonserver_logs``; the
    instance's method is replaced by one that collects whole lines, keeps them and prints all but
    the known noise, and ``logs()`` by one that returns them. Without that layout (another
    PyTriton) nothing is changed."""
    cfg = getattr(triton, "_triton_server_config", None)
    if not gpu and cfg is not None:
        cfg["pinned-memory-pool-byte-size"] = 0
    if getattr(triton, "_triton_server", None) is None and hasattr(triton, "_initialize_server"):
        triton._initialize_server()  # what _run_server() would do first; it then only starts it
    child = getattr(triton, "_triton_server", None)
    if child is None or not hasattr(child, "_record_logs") or not hasattr(child, "_tritonserver_logs"):
        return

    pending = [""]  # PyTriton reads the child unbuffered: the callback gets a character at a time
    kept: collections.deque[str] = collections.deque(maxlen=_LOG_KEEP_LINES)

    def record(chunk: bytes | str) -> None:
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", errors="replace")
        *lines, pending[0] = (pending[0] + chunk).split("\n")
        if not lines:
            return
        kept.extend(lines)
        shown = [ln for ln in lines if not is_known_noise(ln, gpu)]
        if shown and getattr(child, "_verbose", True):
            print("\n".join(shown), flush=True)

    child.logs = lambda: "\n".join([*kept, pending[0]])
    child._record_logs = record


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
        """Open the backend, start tritonserver and wait until this process's model is ready.

        Fails with one-line :class:`DetnetError` s: a port already in use (before anything starts),
        tritonserver exiting during start-up (its last error line in the message), or the model not
        ready within ``options.start_timeout_s``.
        """
        _require_pytriton()
        from pytriton.decorators import batch  # type: ignore[import-untyped]
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # type: ignore[import-untyped]
        from pytriton.triton import Triton, TritonConfig  # type: ignore[import-untyped]

        if self._triton is not None:
            return self
        check_ports_free(self.options.host, self.options.port_flags())
        self.backend.open()
        meta = self.backend.meta
        address = self.options.bind_address
        gpu = _has_gpu()
        config = TritonConfig(
            http_address=address,
            http_port=self.ports["http"],
            grpc_address=address,
            grpc_port=self.ports["grpc"],
            metrics_address=address,
            metrics_port=self.ports["metrics"],
            allow_metrics=True,
            allow_cpu_metrics=True,
            allow_gpu_metrics=gpu,
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
                self._run_until_ready(triton)
        except BaseException:
            with contextlib.suppress(Exception):  # a dead child's exit status must not mask why
                triton.stop()
            self.backend.close()
            raise
        self._triton = triton
        return self

    def _run_until_ready(self, triton: Any) -> None:
        """Start tritonserver and wait, with a deadline, until *its* endpoint is ready, then load the
        model (``Triton.run()`` is ``_run_server()`` + ``connect()``). PyTriton's own wait probes
        the URL for two minutes, whoever answers there and whether or not its child has died (and
        holds a lock that ``stop()`` needs meanwhile); here a dead child fails within a poll."""
        spawn = getattr(triton, "_run_server", None)
        if spawn is None:  # not PyTriton 0.7's layout: its own, longer wait
            triton.run()
            return
        _quiet_known_noise(triton, gpu=_has_gpu())
        spawn()  # in this thread: PR_SET_PDEATHSIG kills the child when the thread that spawned it ends
        child = getattr(triton, "_triton_server", None)
        pid = _child_pid(child)
        deadline = time.monotonic() + self.options.start_timeout_s
        ready_url = f"http://{self.options.bind_address}:{self.ports['http']}/v2/health/ready"
        while not _http_ok(ready_url, 1.0):
            if not _alive(child, pid):
                raise DetnetError(
                    f"tritonserver exited during start-up{_exit_code(child)}: {_last_error_line(child)}",
                    "see its log above",
                )
            if time.monotonic() > deadline:
                raise DetnetError(
                    f"tritonserver was not ready {self.options.start_timeout_s:g} s after it started",
                    "see the server log above",
                )
            time.sleep(0.1)
        if not _alive(child, pid):  # someone else answered on our port
            raise DetnetError(f"tritonserver exited during start-up{_exit_code(child)}: {_last_error_line(child)}")
        triton.connect()  # PyTriton's wait returns at once now; this loads the model
        if not (_alive(child, pid) and self.model_ready()):
            raise DetnetError(
                f"model '{self.name}' is not ready at http://{self.http_url} after start-up", "see the server log above"
            )

    def model_ready(self, timeout_s: float = 5.0) -> bool:
        """Whether our model answers ready on this server's HTTP endpoint."""
        url = f"http://{self.options.bind_address}:{self.ports['http']}/v2/models/{self.name}/ready"
        return _http_ok(url, timeout_s)

    @property
    def server_pid(self) -> int | None:
        """The process id of the tritonserver child while it runs (for monitoring, benchmarks)."""
        return _child_pid(getattr(self._triton, "_triton_server", None))

    def wait(self, poll_s: float = 1.0) -> None:
        """Block until Ctrl+C (returns) or until tritonserver dies (raises); then stop."""
        if self._triton is None:
            self.start()
        try:
            while self._triton is not None and self._triton.is_alive():
                time.sleep(poll_s)
            child = getattr(self._triton, "_triton_server", None)
            last = f": {_last_error_line(child)}" if child is not None else ""
            raise DetnetError(
                f"tritonserver or its model stopped unexpectedly{last}",
                "see the server log above; restart `detnet-trt serve`",
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
