"""The option groups of infer / camera / compare / bench / eval: each command's flags build its options
objects with the same defaults as before, and a bad value is a one-line error naming the flag."""

from __future__ import annotations

import pytest

from detnet_trt.apps.bench import BenchOptions
from detnet_trt.apps.camera import CameraOptions
from detnet_trt.apps.compare import CompareOptions
from detnet_trt.apps.infer import InferOptions
from detnet_trt.cli import build_parser, main
from detnet_trt.cli._options import postprocess_config
from detnet_trt.cli.bench import bench_options
from detnet_trt.cli.camera import camera_options
from detnet_trt.cli.compare import compare_options
from detnet_trt.cli.eval import eval_options
from detnet_trt.cli.infer import infer_options
from detnet_trt.core.config import PostprocessConfig
from detnet_trt.evaluation.coco_eval import EvalOptions

MINIMAL = {
    "infer": ["infer", "--model", "m.onnx", "a.jpg", "--out", "o"],
    "camera": ["camera", "--model", "m.onnx", "--source", "0"],
    "compare": ["compare", "a.onnx", "b.onnx"],
    "bench": ["bench", "--model", "m.onnx"],
    "eval": ["eval", "--model", "m.onnx", "--data", "d"],
}


def _args(command: str, *extra: str):
    return build_parser().parse_args([*MINIMAL[command], *extra])


@pytest.mark.parametrize("command, conf, iou, max_det", [
    ("infer", 0.5, 0.5, 100), ("camera", 0.5, 0.5, 100), ("compare", 0.5, 0.5, None), ("eval", 0.001, 0.6, 100),
])
def test_post_processing_flags_keep_each_commands_defaults(command, conf, iou, max_det) -> None:
    args = _args(command)
    assert (args.conf, args.iou, getattr(args, "max_det", None)) == (conf, iou, max_det)
    defaults = PostprocessConfig.for_eval() if command == "eval" else PostprocessConfig()
    assert postprocess_config(args, defaults) == defaults
    args = _args(command, "--conf", "0.25", "--iou", "0.45", *(["--max-det", "7"] if max_det else []))
    assert postprocess_config(args) == PostprocessConfig(0.25, 0.45, 7 if max_det else 100)


def test_bench_has_no_post_processing_flags() -> None:
    assert not hasattr(_args("bench"), "conf")


def test_default_flags_build_the_default_options() -> None:
    assert infer_options(_args("infer")) == InferOptions()
    assert camera_options(_args("camera")) == CameraOptions()
    assert compare_options(_args("compare")) == CompareOptions()
    assert bench_options(_args("bench")) == BenchOptions()
    assert eval_options(_args("eval")) == EvalOptions()


def test_flags_reach_the_options() -> None:
    assert infer_options(_args("infer", "--batch", "3", "--force", "--quiet")) == InferOptions(3, True, False)
    cam = camera_options(_args("camera", "--headless", "--jsonl", "o.jsonl", "--max-frames", "5", "--no-overlap",
                               "--no-reconnect", "--width", "640", "--log-interval", "0", "--force"))
    assert cam == CameraOptions(show=False, jsonl="o.jsonl", max_frames=5, overlap=False, reconnect=False, width=640,
                                log_interval=None, force=True)  # --log-interval 0: never
    cmp = compare_options(_args("compare", "--image-dir", "imgs", "--num", "4", "--seed", "2", "--batch", "2",
                                "--match-iou", "0.7", "--quiet"))
    assert cmp == CompareOptions(images="imgs", num_images=4, seed=2, batch=2, match_iou=0.7, progress=False)
    bench = bench_options(_args("bench", "--batch", "1,4", "--iterations", "9", "--warmup", "0", "--frame-size",
                                "640x480", "--no-e2e"))
    assert bench == BenchOptions(batches=(1, 4), iterations=9, warmup=0.0, frame_size=(480, 640), end_to_end=False)
    ev = eval_options(_args("eval", "--batch", "4", "--limit", "10", "--json", "r.json", "--force", "--quiet"))
    assert ev == EvalOptions(batch=4, max_images=10, results_json="r.json", force=True, progress=False)


@pytest.mark.parametrize("argv, flag", [
    (["infer", "--model", "m.onnx", "a.jpg", "--out", "o", "--batch", "0"], "--batch"),
    (["infer", "--model", "m.onnx", "a.jpg", "--out", "o", "--iou", "0"], "--iou"),
    (["camera", "--model", "m.onnx", "--source", "0", "--max-frames", "0"], "--max-frames"),
    (["camera", "--model", "m.onnx", "--source", "0", "--conf", "2"], "--conf"),
    (["compare", "a.onnx", "b.onnx", "--batch", "0"], "--batch"),
    (["bench", "--model", "m.onnx", "--duration", "0"], "--duration"),
    (["eval", "--model", "m.onnx", "--data", "d", "--batch", "0"], "--batch"),
    (["eval", "--model", "m.onnx", "--data", "d", "--max-det", "0"], "--max-det"),
])
def test_bad_values_are_one_line_errors_naming_the_flag(argv, flag, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"detnet-trt {argv[0]}: error: ") and flag in err
