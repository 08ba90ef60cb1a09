"""Load benchmark of ``detnet-trt serve``: throughput and p50/p99 latency, dynamic batching on/off.

Starts the real PyTriton ``tritonserver`` on loopback (free ports) with the model on CPU (ONNX
Runtime), then C client threads (tritonclient, HTTP) each send single-image requests back to back
(a pre-letterboxed image + its original size, so the figures are the server's, not the client's
letterboxing) until they have sent ``--requests`` each or ``--duration`` seconds have passed. The
same load goes to two servers: one with Triton's dynamic batcher (``--max-batch``,
``--queue-delay-us``) and one without (each request its own inference); for reference, the model
is also timed in-process without any server at batch 1 and at ``--max-batch``. The modes
alternate over ``--rounds`` rounds so that a shared machine's drifting load hits them alike. Results and the machine go to
``--out``/triton_serve.{json,md}.

    .venv/bin/python benchmarks/bench_triton.py                         # demo model, ~1 min
    .venv/bin/python benchmarks/bench_triton.py --model m.onnx --clients 8 --rounds 6 --requests 50 --duration 5

Loopback only; bounded by count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from _timing import machine

from detnet_trt.core.fileio import atomic_write_text
from detnet_trt.runtime.backends import Backend, load_backend
from detnet_trt.runtime.letterbox import letterbox
from detnet_trt.runtime.postprocess import postprocess
from detnet_trt.serving.triton.client import DetnetClient
from detnet_trt.serving.triton.server import DetnetTritonServer, ServeOptions, free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO_CKPT = ROOT / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"


def _machine() -> dict:
    """``_timing.machine()`` plus the 1-minute load and the serving stack's versions."""
    versions = {}
    for pkg in ("nvidia-pytriton", "tritonclient", "onnxruntime", "numpy", "detnet-trt"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {**machine(), "load_avg_1m": round(os.getloadavg()[0], 2), "packages": versions}


def _percentiles(lat_s: list[float]) -> dict:
    a = np.asarray(lat_s) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)}


def _model_path(arg: str | None, work: Path) -> Path:
    if arg:
        return Path(arg)
    if not DEMO_CKPT.is_file():
        sys.exit(f"no --model given and the demo model {DEMO_CKPT} is missing")
    from detnet_trt.export.onnx import export_onnx

    return export_onnx(DEMO_CKPT, work / "demo_fp32.onnx", force=True)


def _load(srv: DetnetTritonServer, image: np.ndarray, size: np.ndarray, clients: int, requests: int,
          duration: float) -> dict:
    """One slice of load: ``clients`` threads, each at most ``requests`` requests or ``duration`` s."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop_at = [time.perf_counter() + 3600]
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        with DetnetClient(srv.http_url, srv.name) as c:
            c.infer_raw(image, size)  # warm-up, connection set up
            barrier.wait()
            for _ in range(requests):
                if time.perf_counter() > stop_at[0]:
                    break
                t0 = time.perf_counter()
                try:
                    c.infer_raw(image, size)
                except Exception as err:  # noqa: BLE001 - counted, reported
                    errors.append(str(err))
                    continue
                lat[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()  # all connected and warmed up
    n_before = len(srv.batches_seen)
    t_start = time.perf_counter()
    stop_at[0] = t_start + duration
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    return {"lat": [x for li in lat for x in li], "wall": wall, "errors": len(errors),
            "batches": list(srv.batches_seen)[n_before:]}


def _summary(slices: list[dict]) -> dict:
    lat = [x for sl in slices for x in sl["lat"]]
    wall = sum(sl["wall"] for sl in slices)
    batches = [b for sl in slices for b in sl["batches"]]
    return {
        "requests": len(lat), "errors": sum(sl["errors"] for sl in slices), "wall_s": round(wall, 2),
        "throughput_ips": round(len(lat) / wall, 1),
        "throughput_per_round_ips": [round(len(sl["lat"]) / sl["wall"], 1) for sl in slices],
        **_percentiles(lat),
        "server_batches": len(batches), "mean_batch": round(float(np.mean(batches)), 2) if batches else 0.0,
        "batch_histogram": {str(b): batches.count(b) for b in sorted(set(batches))},
    }


def _local(be: Backend, image: np.ndarray, batch: int, seconds: float) -> dict:
    """The same backend + post-processing in this process, no server: batches of ``batch`` images."""
    x = np.repeat(image, batch, axis=0)
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end and len(lat) < 500:
        t0 = time.perf_counter()
        postprocess(be.infer(x))  # same defaults as the servers: conf 0.25, iou 0.5, max_det 100
        lat.append(time.perf_counter() - t0)
    return {"lat": lat}


def _local_summary(batch: int, slices: list[dict]) -> dict:
    lat = [x for sl in slices for x in sl["lat"]]
    return {"batch": batch, "iterations": len(lat), "throughput_ips": round(batch * len(lat) / sum(lat), 1),
            "throughput_per_round_ips": [round(batch * len(sl["lat"]) / sum(sl["lat"]), 1) for sl in slices],
            **_percentiles(lat)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help=".onnx / .pt / .engine (default: the shipped demo model, exported to ONNX)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds; each runs every mode once (default 4)")
    ap.add_argument("--requests", type=int, default=30, help="requests per client per round at most (default 30)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per mode per round at most (default 4)")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--queue-delay-us", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--note", default="", help="a line about the model, written into the record")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        model = _model_path(args.model, Path(work))
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        backend = load_backend(model)
        image, info = letterbox(frame, backend.meta.input_size, backend.meta.layout)
        size = np.array([[info.orig_h, info.orig_w]], np.int32)
        servers = {
            mode: DetnetTritonServer(load_backend(model), options=ServeOptions(
                http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                max_batch=args.max_batch, dynamic_batching=mode == "dynamic_batching",
                queue_delay_us=args.queue_delay_us,
            ))
            for mode in ("dynamic_batching", "no_batching")
        }
        slices: dict[str, list[dict]] = {mode: [] for mode in servers}
        local_slices: dict[int, list[dict]] = {1: [], args.max_batch: []}
        local_backend = load_backend(model)
        try:
            local_backend.open()
            for b in local_slices:  # warm-up: the first runs of a fresh session are slower
                _local(local_backend, image, b, 1.0)
            for srv in servers.values():
                srv.start()
                _load(srv, image, size, args.clients, 3, 2.0)  # warm-up, not recorded
            # rounds alternate the modes (and the in-process reference) so that the load of a shared
            # machine, which drifts, weighs on all of them alike
            for rnd in range(args.rounds):
                for mode, srv in servers.items():
                    slices[mode].append(_load(srv, image, size, args.clients, args.requests, args.duration))
                for b in local_slices:
                    local_slices[b].append(_local(local_backend, image, b, args.duration / 2))
                print(f"round {rnd + 1}/{args.rounds}:",
                      {m: round(len(sl[-1]["lat"]) / sl[-1]["wall"], 1) for m, sl in slices.items()}, flush=True)
        finally:
            for srv in servers.values():
                srv.stop()
            local_backend.close()
        runs = {mode: _summary(sl) for mode, sl in slices.items()}
        local = [_local_summary(b, sl) for b, sl in local_slices.items()]
    rec: dict[str, Any] = {
        "benchmark": "detnet-trt serve (PyTriton) load test, loopback HTTP",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "model": str(args.model or DEMO_CKPT.relative_to(ROOT)),
        "note": args.note,
        "model_meta": {"model": backend.meta.model, "input_size": list(backend.meta.input_size),
                       "classes": backend.meta.num_classes, "precision": backend.meta.precision},
        "backend": backend.name,
        "settings": {"clients": args.clients, "rounds": args.rounds, "requests_per_client_per_round": args.requests,
                     "duration_per_round_s": args.duration,
                     "max_batch": args.max_batch, "queue_delay_us": args.queue_delay_us,
                     "request": "1 image (pre-letterboxed uint8) + orig_size"},
        "runs": runs,
        "in_process_reference": local,
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = Path(args.out)
    atomic_write_text(out / "triton_serve.json", json.dumps(rec, indent=2) + "\n")
    rows = [
        "| mode | requests | errors | throughput (img/s) | p50 (ms) | p99 (ms) | mean server batch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, r in runs.items():
        rows.append(f"| {mode} | {r['requests']} | {r['errors']} | {r['throughput_ips']} | {r['p50_ms']} | "
                    f"{r['p99_ms']} | {r['mean_batch']} |")
    for r in local:
        rows.append(f"| in-process, batch {r['batch']}, no server | {r['iterations']} | 0 | {r['throughput_ips']} | "
                    f"{r['p50_ms']} | {r['p99_ms']} | {r['batch']} |")
    rows.append("")
    rows.append("Throughput per round (img/s): " + "; ".join(
        [f"{m}: {r['throughput_per_round_ips']}" for m, r in runs.items()]
        + [f"in-process batch {r['batch']}: {r['throughput_per_round_ips']}" for r in local]))
    m = rec["machine"]
    md = (
        f"# detnet-trt serve: load test ({rec['date']})\n\n"
        f"Model {rec['model']} ({backend.meta.model}, {backend.meta.input_size[0]}x{backend.meta.input_size[1]}, "
        f"{backend.name}, CPU); {args.clients} HTTP client threads on loopback, 1 image per request; "
        f"{args.rounds} rounds, each running every mode for at most {args.requests} requests per client or "
        f"{args.duration} s (in-process: {args.duration / 2} s); max batch {args.max_batch}, "
        f"queue delay {args.queue_delay_us} us. Latency is per request, as the client sees it. The "
        f"in-process rows time the same backend + post-processing without a server. The modes alternate "
        f"round by round because the machine is shared and its load drifts.\n\n"
        + (f"{args.note}\n\n" if args.note else "")
        + "\n".join(rows)
        + f"\n\nMachine: {m['cpu_model']}, {m['cpus']} CPUs (shared; 1-min load {m['load_avg_1m']}), "
        f"Python {m['python']}, {', '.join(f'{k} {v}' for k, v in m['packages'].items())}.\n\n"
        f"Command: `{rec['command']}`\n"
    )
    atomic_write_text(out / "triton_serve.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
