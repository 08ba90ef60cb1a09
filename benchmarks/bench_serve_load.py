"""Bounded load test of ``detnet-trt serve``: every valid request answered, every malformed one
rejected, and memory that does not grow.

Starts the real PyTriton ``tritonserver`` on loopback (free ports) with the model on CPU (ONNX
Runtime), then ``--clients`` threads (half HTTP, half gRPC, one ``DetnetClient`` each) send
single-image requests back to back for ``--duration`` seconds. Every ``--bad-every``-th request of
a thread is malformed, cycling through: wrong dtype (float32 images), wrong shape (16x16 images),
missing ``orig_size``. Counted: valid requests answered (with a well-formed response), valid
requests that failed, malformed requests rejected, malformed requests accepted (a bug), other
errors. The resident memory (``VmRSS`` from ``/proc``) of this Python process (the backend runs
here), of the tritonserver child and of its children (the Python-backend stub) is sampled every
second; start (after a warm-up), middle and end are reported, and growth is the end minus the
middle. After the load the server must still answer a valid request. Results and the machine go to
``--out``/serve_load.{json,md}.

    .venv/bin/python benchmarks/bench_serve_load.py                      # demo model, 8 clients, 30 s
    .venv/bin/python benchmarks/bench_serve_load.py --model m.onnx --clients 16 --duration 60

Loopback only; bounded by time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from _timing import machine, write_results

from detnet_trt.runtime.backends import load_backend
from detnet_trt.serving.triton import protocol
from detnet_trt.serving.triton.client import DetnetClient, ServerError
from detnet_trt.serving.triton.server import DetnetTritonServer, ServeOptions, free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO_CKPT = ROOT / "detnet_trt" / "assets" / "detnet_tiny_synth.pt"
BAD_KINDS = ("wrong dtype", "wrong shape", "missing orig_size")
# what Triton's rejection of each malformed kind says (a rejection for another reason is counted apart)
EXPECTED = {"wrong dtype": "data-type is 'FP32'", "wrong shape": "unexpected shape for input 'images'",
            "missing orig_size": "missing required input(s) ['orig_size']"}


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def _children(pid: int | None) -> list[int]:
    if pid is None:
        return []
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _sample(server_pid: int | None) -> dict[str, Any]:
    stub = sum(_rss_mb(c) or 0.0 for c in _children(server_pid))
    return {
        "t": round(time.monotonic(), 2),
        "python_mb": _rss_mb(os.getpid()),
        "tritonserver_mb": _rss_mb(server_pid),
        "stubs_mb": round(stub, 1),
    }


def _requests(shape: tuple[int, ...]) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, *shape), dtype=np.uint8)
    size = np.array([[240, 320]], np.int32)
    return {
        "valid": {protocol.IMAGES: image, protocol.ORIG_SIZE: size},
        "wrong dtype": {protocol.IMAGES: image.astype(np.float32), protocol.ORIG_SIZE: size},
        "wrong shape": {protocol.IMAGES: np.zeros((1, shape[0], 16, 16), np.uint8), protocol.ORIG_SIZE: size},
        "missing orig_size": {protocol.IMAGES: image},
    }


def _worker(t: int, srv: DetnetTritonServer, args: argparse.Namespace, deadline: float, reqs: dict, state: dict) -> None:
    url, proto = (srv.http_url, "http") if t % 2 == 0 else (srv.grpc_url, "grpc")
    counts: Counter[str] = Counter()
    lat: list[float] = []
    messages: dict[str, str] = {}
    try:
        with DetnetClient(url, srv.name, proto) as client:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                kind = BAD_KINDS[(i // args.bad_every) % len(BAD_KINDS)] if i % args.bad_every == 0 else "valid"
                t0 = time.perf_counter()
                try:
                    res = client.infer_named(reqs[kind])
                except ServerError as err:
                    if kind == "valid":
                        counts["valid failed"] += 1
                    elif EXPECTED[kind] in str(err):
                        counts["rejected"] += 1
                        counts[f"rejected: {kind}"] += 1
                    else:
                        counts["rejected for another reason"] += 1
                    messages.setdefault(kind, str(err)[:300])
                    continue
                if kind != "valid":
                    counts["malformed accepted"] += 1
                elif res[protocol.NUM_DETS].shape == (1, 1) and res[protocol.DET_BOXES].shape[0] == 1:
                    counts["answered"] += 1
                    lat.append(time.perf_counter() - t0)
                else:
                    counts["valid bad response"] += 1
    except Exception as err:  # noqa: BLE001 - counted; the run goes on
        counts["errors"] += 1
        messages.setdefault("error", f"{type(err).__name__}: {err}"[:300])
    with state["lock"]:
        state["counts"].update(counts)
        state["latency"].extend(lat)
        for k, v in messages.items():
            state["messages"].setdefault(k, v)


def _model(path: str | None, tmp: str) -> Path:
    if path:
        return Path(path)
    from detnet_trt.export.onnx import export_onnx

    return Path(export_onnx(DEMO_CKPT, Path(tmp) / "detnet_tiny.onnx"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(args.model, tmp)
        srv = DetnetTritonServer(
            load_backend(model),
            options=ServeOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                 max_batch=args.max_batch, queue_delay_us=args.queue_delay_us),
        )
        t_start = time.monotonic()
        srv.start()
        start_s = time.monotonic() - t_start
        try:
            reqs = _requests(tuple(srv.backend.meta.input_shape()[1:]))
            with DetnetClient(srv.http_url, srv.name) as c:  # warm-up
                for _ in range(20):
                    c.infer_named(reqs["valid"])
            pid = srv.server_pid
            samples = [_sample(pid)]
            state: dict[str, Any] = {"lock": threading.Lock(), "counts": Counter(), "latency": [], "messages": {}}
            deadline = time.monotonic() + args.duration
            threads = [threading.Thread(target=_worker, args=(t, srv, args, deadline, reqs, state))
                       for t in range(args.clients)]
            t0 = time.monotonic()
            for th in threads:
                th.start()
            while any(th.is_alive() for th in threads):
                time.sleep(1.0)
                samples.append(_sample(pid))
            for th in threads:
                th.join()
            wall = time.monotonic() - t0
            samples.append(_sample(pid))
            with DetnetClient(srv.http_url, srv.name) as c:
                after = c.infer_named(reqs["valid"])[protocol.NUM_DETS].shape == (1, 1)
            alive = srv.model_ready()
        finally:
            srv.stop()
    return _record(args, model, srv, samples, state, wall, start_s, after and alive)


def _record(args, model, srv, samples, state, wall, start_s, ok_after) -> dict[str, Any]:
    counts = dict(state["counts"])
    lat = np.asarray(state["latency"]) * 1000.0
    mid = samples[len(samples) // 2]
    keys = ("python_mb", "tritonserver_mb", "stubs_mb")
    growth = {k: round((samples[-1][k] or 0.0) - (mid[k] or 0.0), 1) for k in keys}
    bad = counts.get("valid failed", 0) + counts.get("malformed accepted", 0) + counts.get("errors", 0)
    bad += counts.get("valid bad response", 0) + counts.get("rejected for another reason", 0)
    versions = {}
    for pkg in ("nvidia-pytriton", "tritonclient", "onnxruntime"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "machine": {**machine(), "packages": versions},
        "model": model.name if args.model else "detnet_tiny_synth.pt -> FP32 ONNX (shipped demo model)",
        "backend": srv.backend.name,
        "settings": {"clients": args.clients, "duration_s": args.duration, "bad_every": args.bad_every,
                     "max_batch": args.max_batch, "queue_delay_us": args.queue_delay_us,
                     "protocols": "even threads HTTP, odd gRPC", "malformed kinds": list(BAD_KINDS)},
        "server_start_s": round(start_s, 2),
        "wall_s": round(wall, 2),
        "counts": counts,
        "answered_per_s": round(counts.get("answered", 0) / wall, 1),
        "latency_valid_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                             "p99": round(float(np.percentile(lat, 99)), 1)} if lat.size else None,
        "rejection_messages": state["messages"],
        "rss_mb": {"start": samples[0], "middle": mid, "end": samples[-1],
                   "max": {k: max((s[k] or 0.0) for s in samples) for k in keys}},
        "rss_growth_middle_to_end_mb": growth,
        "rss_slope_second_half_mb_per_min": _slopes(samples[len(samples) // 2 :], keys),
        "rss_series": samples,
        "answers_after_load": ok_after,
        "ok": bad == 0 and ok_after and counts.get("answered", 0) > 0 and counts.get("rejected", 0) > 0,
    }


def _slopes(samples: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float | None]:
    """Least-squares RSS slope (MB/min) of each process over ``samples``."""
    if len(samples) < 3:
        return dict.fromkeys(keys)
    t = np.asarray([s["t"] for s in samples]) / 60.0
    return {k: round(float(np.polyfit(t, [s[k] or 0.0 for s in samples], 1)[0]), 2) for k in keys}


def _markdown(doc: dict[str, Any]) -> str:
    c, r, g = doc["counts"], doc["rss_mb"], doc["rss_growth_middle_to_end_mb"]
    lat = doc["latency_valid_ms"] or {"p50": "n/a", "p99": "n/a"}
    s = doc["settings"]
    m = doc["machine"]
    per_kind = ", ".join(f"{k}: {c.get('rejected: ' + k, 0)}" for k in BAD_KINDS)
    lines = [
        "# `serve` under load: answers, rejections, memory",
        "",
        f"{s['clients']} client threads ({s['protocols']}) for {s['duration_s']} s against `detnet-trt serve` "
        f"({doc['backend']}, {doc['model']}; dynamic batching, max batch {s['max_batch']}); every "
        f"{s['bad_every']}th request malformed ({', '.join(s['malformed kinds'])}).",
        "",
        "| valid answered | valid failed | malformed rejected | malformed accepted | other errors | answered/s "
        "| p50 / p99 (ms) | answers after load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {c.get('answered', 0)} | {c.get('valid failed', 0) + c.get('valid bad response', 0)} "
        f"| {c.get('rejected', 0)} ({per_kind}) "
        f"| {c.get('malformed accepted', 0) + c.get('rejected for another reason', 0)} | {c.get('errors', 0)} "
        f"| {doc['answered_per_s']} | {lat['p50']} / {lat['p99']} | {doc['answers_after_load']} |",
        "",
        "| RSS (MB) | start | middle | end | max | growth middle -> end | slope, 2nd half (MB/min) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, label in (("python_mb", "this Python (backend)"), ("tritonserver_mb", "tritonserver"),
                     ("stubs_mb", "Python-backend stub(s)")):
        slope = doc["rss_slope_second_half_mb_per_min"][k]
        lines.append(
            f"| {label} | {r['start'][k]} | {r['middle'][k]} | {r['end'][k]} | {r['max'][k]} | {g[k]:+} | {slope} |"
        )
    lines += [
        "",
        f"Verdict: {'OK' if doc['ok'] else 'FAILED'} (every valid request answered, every malformed one rejected, "
        "server answering afterwards). Start is after a 20-request warm-up, before the load; the rise from "
        "start to middle is the allocators, queues and ONNX Runtime arenas filling under 8 concurrent "
        "requests; growth is judged from the middle on (the whole series is in the JSON).",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, load {m['loadavg']}, Python {m['python']}, "
        f"{', '.join(f'{k} {v}' for k, v in m['packages'].items())}; {m['date']}.",
        f"Command: `{m['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a .pt/.onnx/.engine (default: the shipped demo model exported to ONNX)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--bad-every", type=int, default=4, help="every Nth request of a client is malformed (default 4)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    doc = run(args)
    write_results(args.out, "serve_load", doc, _markdown(doc))
    print(_markdown(doc))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
