"""``detnet-trt demo``: the whole offline pipeline on the shipped model, on CPU, in a few minutes.

Steps (each one calls the library function behind a ``detnet-trt`` command; the first failure
stops the demo with a message that names the step):

1. ``data``      synthetic demo scenes (a seed the shipped model never saw), COCO layout
2. ``export``    shipped checkpoint -> FP32 ONNX (:func:`detnet_trt.export.onnx.export_onnx`)
3. ``calib-set`` the demo calibration set (:func:`detnet_trt.quantize.calibset.make_calib_set`)
4. ``quantize``  FP32 ONNX -> INT8 Q/DQ ONNX (:func:`detnet_trt.quantize.calibrate.quantize_onnx`)
5. ``eval``      COCO AP of FP32 vs INT8 on the demo val split -> ``ap_table.md`` / ``.json``
6. ``detect``    annotated pictures of sample images -> ``detections/*.jpg``
7. ``camera``    a short generated video through the camera loop -> ``camera/annotated.mp4``
8. ``bench``     latency of FP32 and INT8 (ONNX Runtime, CPU) -> ``latency.png`` / ``bench.json``
9. ``tensorrt``  try the INT8 TensorRT engine build; without TensorRT it prints its one-line
                 message and the demo carries on

Everything lands under one output folder (``demo_out`` by default), whose path is printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DetnetError, MissingDependencyError, ModelFileError, OutputExistsError

SHIPPED_MODEL = Path(__file__).parents[1] / "assets" / "detnet_tiny_synth.pt"
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class DemoError(DetnetError):
    """A demo step failed; the message names the step and the cause."""


@dataclass
class DemoConfig:
    """The embedded defaults of the demo (all small enough for a 2-core CPU)."""

    out: Path = Path("demo_out")
    checkpoint: Path = SHIPPED_MODEL
    images: int = 100  # synthetic demo scenes (train + val), 320 x 320
    val_fraction: float = 0.4
    seed: int = 2026  # the shipped model was trained on seed 0
    calib_images: int = 48
    calib_method: str = "minmax"  # best of the three on this model: benchmarks/results/int8_methods.md
    sample_images: int = 6
    video_frames: int = 48
    bench_seconds: float = 3.0
    force: bool = False
    progress: bool = True


@dataclass
class _Ctx:
    cfg: DemoConfig
    out: Path
    paths: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- steps -----------------------------------------------------------------------------------
def _step_data(ctx: _Ctx) -> None:
    from ..data.synth import make_synth_dataset

    root = ctx.out / "data"
    make_synth_dataset(
        root,
        images=ctx.cfg.images,
        seed=ctx.cfg.seed,
        val_fraction=ctx.cfg.val_fraction,
        force=True,
        progress=ctx.cfg.progress,
    )
    from ..data.coco import resolve_coco_dir

    ctx.paths["train_ann"], ctx.paths["train_images"] = resolve_coco_dir(root, "train")
    ctx.paths["val_ann"], ctx.paths["val_images"] = resolve_coco_dir(root, "val")


def _step_export(ctx: _Ctx) -> None:
    from ..export.onnx import export_onnx

    ctx.paths["fp32"] = export_onnx(ctx.cfg.checkpoint, ctx.out / "detnet_tiny_fp32.onnx", force=True)


def _step_calib_set(ctx: _Ctx) -> None:
    from ..quantize.calibset import make_calib_set

    ctx.paths["calib"] = make_calib_set(
        ctx.paths["train_images"],
        ctx.out / "calib_set.txt",
        annotations=ctx.paths["train_ann"],
        num=ctx.cfg.calib_images,
        seed=0,
        force=True,
    )


def _step_quantize(ctx: _Ctx) -> None:
    from ..quantize.calibrate import quantize_onnx
    from ..quantize.options import QuantizeOptions

    ctx.paths["int8"] = quantize_onnx(
        ctx.paths["fp32"],
        ctx.paths["calib"],
        ctx.out / "detnet_tiny_int8.onnx",
        QuantizeOptions(method=ctx.cfg.calib_method),
        force=True,
        progress=ctx.cfg.progress,
    )


def _step_eval(ctx: _Ctx) -> None:
    from ..core.fileio import atomic_write_text
    from ..evaluation.coco_eval import EvalOptions, evaluate

    rows: dict[str, dict[str, float]] = {}
    for name in ("fp32", "int8"):
        res = evaluate(ctx.paths[name], ctx.paths["val_ann"], ctx.paths["val_images"],
                       EvalOptions(progress=ctx.cfg.progress))
        rows[name.upper()] = {k: float(res.metrics[k]) for k in AP_KEYS if k in res.metrics}
    table = format_ap_table(rows)
    ctx.paths["ap_table"] = atomic_write_text(ctx.out / "ap_table.md", table + "\n")
    atomic_write_text(ctx.out / "ap_table.json", json.dumps(rows, indent=2) + "\n")
    ctx.results["ap"] = rows
    _say(table)


def format_ap_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table of COCO AP metrics per model, plus the INT8 - FP32 difference."""
    keys = [k for k in AP_KEYS if all(k in r for r in rows.values())]
    lines = ["| model | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    if "FP32" in rows and "INT8" in rows:
        lines.append(
            "| INT8 - FP32 | " + " | ".join(f"{rows['INT8'][k] - rows['FP32'][k]:+.1f}" for k in keys) + " |"
        )
    return "\n".join(lines)


def _step_detect(ctx: _Ctx) -> None:
    import cv2

    from ..core.fileio import atomic_write_bytes
    from ..core.images import list_images, read_image
    from ..runtime.backends import load_backend
    from ..runtime.detector import Detector
    from .visualize import draw_detections, draw_text

    files = list_images(ctx.paths["val_images"])[: ctx.cfg.sample_images]
    folder = ctx.out / "detections"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with load_backend(ctx.paths["fp32"]) as fp32, load_backend(ctx.paths["int8"]) as int8:
        det_fp32, det_int8 = Detector(fp32), Detector(int8)
        for f in files:
            frame = read_image(f)
            panels = []
            for label, det in (("FP32", det_fp32), ("INT8", det_int8)):
                dets = det([frame])[0]
                panel = draw_detections(frame, dets, det.class_names)
                draw_text(panel, [f"{label}: {len(dets.scores)} detections"])
                panels.append(panel)
            ok, buf = cv2.imencode(".jpg", cv2.hconcat(panels), [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise DemoError(f"could not encode the annotated picture of {f.name}")
            written.append(atomic_write_bytes(folder / f"{f.stem}.jpg", buf.tobytes()))
    ctx.paths["detections"] = folder
    ctx.results["detections"] = [str(p) for p in written]


def make_demo_video(
    image_files: list[Path], out: Path, frames: int = 48, size: tuple[int, int] = (360, 480), fps: int = 12
) -> Path:
    """A short MJPG video panning and zooming across the given images (deterministic)."""
    import cv2
    import numpy as np

    from ..core.fileio import check_writable

    imgs = [cv2.imread(str(f)) for f in image_files]
    imgs = [im for im in imgs if im is not None]
    if not imgs:
        raise DemoError("no readable images to make the demo video from")
    h, w = size
    strip = cv2.hconcat([cv2.resize(im, (h, h)) for im in imgs])
    check_writable(out, True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise DemoError(f"OpenCV cannot write the video {tmp}", "install an OpenCV build with video support")
    try:
        span = max(0, strip.shape[1] - w)
        for i in range(frames):
            t = i / max(1, frames - 1)
            zoom = 1.0 + 0.25 * np.sin(np.pi * t)
            x0 = int(round(span * t))
            crop = strip[:, x0 : x0 + w]
            ch, cw = int(h / zoom), int(crop.shape[1] / zoom)
            y1, x1 = (h - ch) // 2, (crop.shape[1] - cw) // 2
            frame = cv2.resize(crop[y1 : y1 + ch, x1 : x1 + cw], (w, h))
            writer.write(frame)
    finally:
        writer.release()
    os.replace(tmp, out)
    return out


def _step_camera(ctx: _Ctx) -> None:
    from ..core.images import list_images
    from .camera.loop import run_camera
    from .camera.options import CameraOptions

    folder = ctx.out / "camera"
    video = make_demo_video(list_images(ctx.paths["val_images"]), folder / "input.avi", ctx.cfg.video_frames)
    ctx.paths["video_in"] = video
    options = CameraOptions(show=False, record=folder / "annotated.mp4", jsonl=folder / "detections.jsonl",
                            stats_json=folder / "stats.json", force=True, log_interval=None)
    summary = run_camera(ctx.paths["int8"], str(video), options, handle_signals=False)
    ctx.paths["video_out"] = folder / "annotated.mp4"
    ctx.results["camera"] = {k: summary.get(k) for k in ("frames", "fps", "stop_reason") if k in summary}
    from .camera.timing import format_summary

    _say("    " + format_summary(summary).replace("\n", "\n    "))


def _step_bench(ctx: _Ctx) -> None:
    from ..core.fileio import atomic_write_text
    from ..runtime.backends import load_backend
    from .bench import BenchOptions, benchmark, format_table

    records: dict[str, dict[str, Any]] = {}
    options = BenchOptions(batches=(1,), duration=ctx.cfg.bench_seconds, warmup=0.5)
    for name in ("fp32", "int8"):
        with load_backend(ctx.paths[name]) as backend:
            records[name.upper()] = benchmark(backend, options, machine=name == "fp32")
    atomic_write_text(ctx.out / "bench.json", json.dumps(records, indent=2) + "\n")
    tables = [f"### {name} (ONNX Runtime, CPU)\n\n{format_table(rec)}" for name, rec in records.items()]
    atomic_write_text(ctx.out / "bench.md", "\n\n".join(tables) + "\n")
    ctx.paths["latency_plot"] = plot_latency(records, ctx.out / "latency.png")
    ctx.results["bench_median_ms"] = {
        name: {f: r[f]["latency_ms"]["median"] for r in rec["results"] for f in ("infer", "end_to_end") if f in r}
        for name, rec in records.items()
    }
    for name, figs in ctx.results["bench_median_ms"].items():
        _say(f"    {name}: " + ", ".join(f"{k} median {v:.1f} ms" for k, v in figs.items()))


def plot_latency(records: dict[str, dict[str, Any]], out: Path) -> Path:
    """PNG: batch-1 latency distributions (infer-only and end-to-end) per model, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..core.fileio import atomic_open

    data, labels = [], []
    for name, rec in records.items():
        r = rec["results"][0]
        for fig in ("infer", "end_to_end"):
            if fig in r:
                data.append(r[fig]["samples_ms"])
                labels.append(f"{name}\n{'infer' if fig == 'infer' else 'end-to-end'}")
    figure = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.set_ylabel("latency per image (ms)")
    first = next(iter(records.values()))
    model = first.get("model", {})
    size = "x".join(str(v) for v in model.get("input_size", ()))
    ax.set_title(f"{model.get('name', 'model')} {size}, batch 1, {first['backend'].get('backend', '')} on CPU")
    ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    with atomic_open(out, "wb") as f:
        figure.savefig(f, format="png")
    return out


def _step_tensorrt(ctx: _Ctx) -> None:
    try:
        from ..build.chain import build_engine
        from ..build.options import BuildOptions

        ctx.paths["engine"] = build_engine(
            ctx.paths["int8"], ctx.out / "detnet_tiny_int8.engine", BuildOptions(precision="int8", force=True)
        )
    except MissingDependencyError as err:
        _say(f"    tensorrt: {err}")
        ctx.notes.append(f"TensorRT build skipped: {err}")


STEPS: tuple[tuple[str, str, Callable[[_Ctx], None]], ...] = (
    ("data", "synthetic demo scenes (COCO layout)", _step_data),
    ("export", "shipped checkpoint -> FP32 ONNX", _step_export),
    ("calib-set", "demo calibration set", _step_calib_set),
    ("quantize", "FP32 ONNX -> INT8 Q/DQ ONNX", _step_quantize),
    ("eval", "COCO AP, FP32 vs INT8", _step_eval),
    ("detect", "annotated sample pictures", _step_detect),
    ("camera", "generated video through the camera loop", _step_camera),
    ("bench", "latency, FP32 vs INT8 (ONNX Runtime, CPU)", _step_bench),
    ("tensorrt", "INT8 TensorRT engine build", _step_tensorrt),
)


def run_demo(cfg: DemoConfig | None = None) -> dict[str, Any]:
    """Run every step; returns ``{"out", "paths", "results", "notes", "seconds"}``."""
    cfg = cfg or DemoConfig()
    out = Path(cfg.out).resolve()
    ckpt = Path(cfg.checkpoint)
    if not ckpt.is_file():
        raise ModelFileError(f"demo model {ckpt} not found", "reinstall the package (it ships the demo model)")
    if out.exists() and any(out.iterdir()) and not cfg.force:
        raise OutputExistsError(f"{out} exists and is not empty", "pass --force to overwrite the demo's files in it")
    out.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(cfg, out)
    t_start = time.perf_counter()
    _say(f"detnet-trt demo: model {ckpt}, output {out}")
    for k, (name, what, fn) in enumerate(STEPS, 1):
        _say(f"[{k}/{len(STEPS)}] {name}: {what}")
        t0 = time.perf_counter()
        try:
            fn(ctx)
        except DetnetError as err:
            raise DemoError(f"demo step {k}/{len(STEPS)} '{name}' failed: {err}") from err
        except Exception as err:
            raise DemoError(
                f"demo step {k}/{len(STEPS)} '{name}' failed: {type(err).__name__}: {err}",
                "run `detnet-trt --debug demo` for the traceback",
            ) from err
        _say(f"    done in {time.perf_counter() - t0:.1f}s")
    summary = {
        "out": str(out),
        "paths": {k: str(v) for k, v in ctx.paths.items()},
        "results": ctx.results,
        "notes": ctx.notes,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    from ..core.fileio import atomic_write_text

    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
