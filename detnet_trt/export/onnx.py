"""Checkpoint -> ONNX: the one graph that ONNX Runtime, INT8 calibration and TensorRT all use.

The graph (tensor names from :mod:`detnet_trt.core.meta`):

- input ``images``: uint8, ``N x 3 x H x W`` (``layout="nchw"``) or ``N x H x W x 3``
  (``"nhwc"``), BGR, N dynamic, H x W fixed. Cast, BGR -> RGB and mean/std normalisation are
  inside the graph (the model's ``forward`` does them), so the host only letterboxes.
- ``nms="host"``: ``boxes`` float32 ``N x K x 4`` (xyxy, input pixels), ``scores`` float32
  ``N x K`` (descending), ``class_ids`` int32 ``N x K``; K is the per-image top-K (``topk``).
- ``nms="onnx"``: the same top-K followed by the standard ONNX ``NonMaxSuppression`` (class-aware
  through per-class coordinate offsets, like the host's ``batched_nms``), padded to a fixed count:
  ``det_boxes`` ``N x D x 4``, ``det_scores`` ``N x D``, ``det_class_ids`` ``N x D`` int32 (rows
  past ``num_dets`` are zero) and ``num_dets`` int32 ``N``; D = ``post.max_det``. ONNX Runtime's
  NonMaxSuppression keeps scores ``> conf`` where the host keeps ``>= conf``: they differ only
  for a score exactly at the threshold.

Why these choices:

- Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export). With a fixed H x W it folds the
  anchor-point grid into constants and gives static output shapes (``N x K x 4`` with K a
  number); the legacy TorchScript exporter (``exporter="torchscript"``, kept for older torch)
  leaves Shape/Range subgraphs and symbolic K behind. The dynamo exporter writes opset 18 and
  converts down to 17 (TensorRT 8.6's parser reads opsets up to 17).
- Top-K default: the checkpoint's ``topk`` (1000 for detnet59, 300 for detnet_tiny): COCO
  scoring keeps at most 100 detections per image, and a dense FCOS-style head puts several
  high-scoring candidates on each object, so 1000 pre-NMS candidates (as RetinaNet/FCOS use per
  level) leave NMS enough to choose from while the host receives 24 KB per image instead of the
  dense maps and NMS on 1000 candidates takes 1.6-4.4 ms on one CPU core
  (benchmarks/bench_nms.py). TensorRT's TopK allows K <= 3840.
- Every op is checked against the operator table of TensorRT 8.6's ONNX parser
  (``detnet_trt/data/trt86_onnx_ops.txt``), and no op has an output shape that depends on data,
  except TopK with a constant K (and NonMaxSuppression itself in the ``nms="onnx"`` graph,
  whose result is padded to a fixed size right away).
- The file carries :class:`~detnet_trt.core.meta.ModelMeta` in ``metadata_props`` (plus the
  checkpoint's sha256), read back by :func:`read_onnx_meta`, and the sha256 of its own graph
  (``detnet_trt.content_sha256``, :func:`~detnet_trt.core.onnx_meta.seal`), which every later step
  verifies before using the file: a flipped bit in a weight is refused, not run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .._version import __version__
from ..core.config import GRAPH_NMS, PostprocessConfig
from ..core.errors import InputError
from ..core.fileio import atomic_write_bytes, check_writable, sha256_file
from ..core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS, INPUT_NAME, LAYOUTS, ModelMeta
from ..core.offline import import_ort
from ..core.onnx_meta import seal, set_meta
from .check import TRT86_MAX_OPSET, TRT_MAX_TOPK, ExportCheckError, check_graph
from .nms import _append_nms
from .two_stage import EXPORTER, compare_detections, is_two_stage, two_stage_graph

EXPORTERS = ("dynamo", "torchscript")
EXPORT_NMS_MODES = ("host", "onnx")
_DUMMY_BATCH = 2  # export with N=2 so that nothing specialises on N=1
_EXPORT_CACHE: dict[tuple[Any, ...], bytes] = {}
_CACHE_MAX_BYTES = 64 << 20


# --- export ----------------------------------------------------------------------------------
def export_onnx(  # 10 parameters: the interface `detnet-trt export` and the build chain call
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    layout: str = "nchw",
    topk: int | None = None,
    nms: str = "host",
    post: PostprocessConfig = GRAPH_NMS,
    opset: int = 17,
    force: bool = False,
    exporter: str = "dynamo",
    verify: bool = True,
) -> Path:
    """Export a detnet_trt checkpoint to ONNX at ``output`` (atomically); returns the path.

    Args:
        layout: ``"nchw"`` or ``"nhwc"`` uint8 input (NHWC spares the host a transpose).
        topk: candidates per image (default: the checkpoint's, see the module docstring).
        nms: ``"host"`` (top-K out; NMS on the host) or ``"onnx"`` (in-graph NonMaxSuppression).
        post: only for ``nms="onnx"``: the score threshold, IoU threshold and padded detection
            count baked into the graph (the host may raise ``conf`` further); default
            :data:`~detnet_trt.core.config.GRAPH_NMS`.
        opset: 17 (TensorRT 8.6) or newer (then the TensorRT 8.6 op check is skipped).
        force: overwrite an existing ``output``.
        exporter: ``"dynamo"`` (default) or ``"torchscript"`` (torch's legacy exporter).
        verify: run the file in ONNX Runtime on a random batch and compare with PyTorch.
    """
    _check_args(layout, topk, nms, post, opset, exporter)
    if Path(output).is_dir():
        raise InputError(f"output {output} is a folder", "name the .onnx file to write")
    out = check_writable(output, force, inputs=(checkpoint,))
    model, sha = _load_model(checkpoint, layout, topk)
    if is_two_stage(model):
        return _export_two_stage(model, (checkpoint, out), sha, nms, post, opset, verify)
    meta = model.meta()
    dummy = _random_batch(meta.input_shape(_DUMMY_BATCH), seed=0)
    ref = _reference_outputs(model, dummy)
    k = int(ref[1].shape[1])  # top-K after clamping to locations x classes
    if nms == "onnx" and post.max_det > k:
        raise InputError(f"--max-det {post.max_det} is larger than the top-K {k}", f"use --max-det <= {k}")
    proto = _host_nms_graph(model, dummy, (sha, layout, k, opset, exporter))
    if nms == "onnx":
        _append_nms(proto, post)
    meta = _export_meta(meta, checkpoint, sha, k, nms, post, exporter, opset)
    set_meta(proto, meta)
    proto.producer_name, proto.producer_version = "detnet_trt", __version__
    proto.doc_string = f"DetNet detector {meta.model} exported by detnet_trt {__version__}"
    _check_exported(proto, meta, opset)
    seal(proto)  # the graph's content hash, verified by read_onnx_meta before any later use
    data = proto.SerializeToString()
    if verify:
        _verify(data, dummy, ref, meta)
    return atomic_write_bytes(out, data, force=True)


def _export_two_stage(  # 7 parameters: export_onnx's, for the two-stage detector
    model: Any, paths: tuple[str | os.PathLike[str], Path], sha: str, nms: str, post: PostprocessConfig,
    opset: int, verify: bool,
) -> Path:
    """The two-stage detector's graph (:mod:`.two_stage`): always final detections. Its detection
    settings are the checkpoint's (DetNet_pytorch's test_net.py: score > 0, IoU 0.3, 100), or
    ``post`` when ``nms="onnx"`` is asked for explicitly."""
    import dataclasses

    checkpoint, out = paths
    if nms == "onnx":
        model.config = dataclasses.replace(model.config, det_conf=post.conf, det_iou=post.iou, max_det=post.max_det)
    cfg = model.config
    own = PostprocessConfig(conf=cfg.det_conf, iou=cfg.det_iou, max_det=cfg.max_det)
    meta = model.meta()
    dummy = _random_batch(meta.input_shape(_DUMMY_BATCH), seed=0)
    import torch

    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(dummy))]
    proto = two_stage_graph(model, torch.from_numpy(dummy), opset)
    _tidy(proto, cfg.max_det)
    meta = _export_meta(meta, checkpoint, sha, int(model.topk), "onnx", own, EXPORTER, opset)
    meta = meta.with_updates(extra={**meta.extra, "detector": "two_stage"})
    set_meta(proto, meta)
    proto.producer_name, proto.producer_version = "detnet_trt", __version__
    proto.doc_string = f"two-stage DetNet detector {meta.model} exported by detnet_trt {__version__}"
    _check_exported(proto, meta, opset)
    seal(proto)
    data = proto.SerializeToString()
    if verify:
        sess = import_ort().InferenceSession(data, providers=["CPUExecutionProvider"])
        got = dict(zip(GRAPH_NMS_OUTPUTS, sess.run(list(GRAPH_NMS_OUTPUTS), {INPUT_NAME: dummy})))
        problems = compare_detections(got, dict(zip(GRAPH_NMS_OUTPUTS, ref)), meta.input_size)
        if problems:
            raise ExportCheckError("ONNX Runtime and PyTorch disagree on the exported graph: " + "; ".join(problems[:5]))
    return atomic_write_bytes(out, data, force=True)


def _check_args(layout: str, topk: int | None, nms: str, post: PostprocessConfig, opset: int, exporter: str) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}", f"use one of {LAYOUTS}")
    if nms not in EXPORT_NMS_MODES:
        hint = "TensorRT's EfficientNMS plugin is added to an exported file by detnet_trt.export.efficient_nms" if nms == "efficient" else ""
        raise InputError(f"export supports nms in {EXPORT_NMS_MODES}, got {nms!r}", hint or None)
    if topk is not None and not 1 <= int(topk) <= TRT_MAX_TOPK:
        raise InputError(f"--topk must be in 1..{TRT_MAX_TOPK} (TensorRT's TopK limit), got {topk}")
    if not 1 <= post.max_det <= TRT_MAX_TOPK:
        raise InputError(f"--max-det must be in 1..{TRT_MAX_TOPK}, got {post.max_det}")
    # PostprocessConfig allows conf == 1; NonMaxSuppression keeps scores > conf, which would keep nothing
    if not 0.0 <= post.conf < 1.0 or not 0.0 < post.iou <= 1.0:
        raise InputError(f"need 0 <= conf < 1 and 0 < iou <= 1, got conf={post.conf}, iou={post.iou}")
    if opset < TRT86_MAX_OPSET:
        raise InputError(f"opset {opset} is too old", f"use --opset {TRT86_MAX_OPSET} (TensorRT 8.6 reads up to 17)")
    if exporter not in EXPORTERS:
        raise InputError(f"unknown exporter {exporter!r}", f"use one of {EXPORTERS}")


def _load_model(checkpoint: str | os.PathLike[str], layout: str, topk: int | None) -> tuple[Any, str]:
    """The checkpoint's model in eval mode with the export's layout and top-K, and the file's sha256."""
    from ..models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint, map_location="cpu")
    sha = sha256_file(checkpoint)
    model.eval()
    model.layout = layout
    if topk is not None:
        model.topk = int(topk)
    if model.topk > TRT_MAX_TOPK:
        raise InputError(f"top-K {model.topk} is larger than TensorRT's limit {TRT_MAX_TOPK}", "pass --topk 1000")
    return model, sha


def _reference_outputs(model: Any, dummy: np.ndarray) -> list[np.ndarray]:
    """PyTorch's host-NMS outputs (boxes, scores, class ids) for ``dummy``."""
    import torch

    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(dummy))]


def _host_nms_graph(model: Any, dummy: np.ndarray, key: tuple[Any, ...]) -> onnx.ModelProto:
    """The exported, tidied host-NMS graph; from the in-memory cache when ``key``
    (checkpoint sha256, layout, K, opset, exporter) was exported before."""
    import torch

    if key in _EXPORT_CACHE:
        return onnx.load_from_string(_EXPORT_CACHE[key])
    _, _, k, opset, exporter = key
    proto = _torch_to_onnx(model, torch.from_numpy(dummy), opset, exporter)
    _tidy(proto, k)
    _remember(key, proto)
    return proto


def _export_meta(  # 8 parameters: every one is a field the metadata records
    meta: ModelMeta, checkpoint: str | os.PathLike[str], sha: str, k: int, nms: str, post: PostprocessConfig,
    exporter: str, opset: int,
) -> ModelMeta:
    """The model's metadata with the export's top-K, NMS mode and provenance (``extra``)."""
    import torch

    return meta.with_updates(
        topk=k,
        nms=nms,
        max_det=post.max_det if nms == "onnx" else meta.max_det,
        checkpoint_sha256=sha,
        extra={
            "exporter": exporter,
            "opset": opset,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "detnet_trt": __version__,
            "checkpoint": Path(checkpoint).name,
            **({"nms_conf": post.conf, "nms_iou": post.iou} if nms == "onnx" else {}),
        },
    )


def _check_exported(proto: onnx.ModelProto, meta: ModelMeta, opset: int) -> None:
    """onnx.checker and the graph contract (:func:`check_graph`); raises :class:`ExportCheckError`."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportCheckError(f"the exported graph fails onnx.checker: {str(err).splitlines()[0]}") from err
    problems = check_graph(proto, meta)
    if opset > TRT86_MAX_OPSET:
        # stacklevel 3: the warning points at the caller of export_onnx
        warnings.warn(f"opset {opset}: TensorRT 8.6 cannot parse this file (it reads opsets <= 17)", stacklevel=3)
        problems = [p for p in problems if "TensorRT 8.6" not in p and "opset" not in p]
    if problems:
        raise ExportCheckError("the exported graph breaks the ONNX contract: " + "; ".join(problems[:5]))


def _random_batch(shape: tuple[Any, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Silence the exporters' INFO/WARNING log lines (opset up-conversion, torchvision absent,
    ...) for the duration of one export; levels are restored afterwards."""
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def _torch_to_onnx(model: Any, dummy: Any, opset: int, exporter: str) -> onnx.ModelProto:
    import torch

    in_names, out_names = [INPUT_NAME], list(HOST_NMS_OUTPUTS)
    with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):
        warnings.simplefilter("ignore")  # tracer / exporter chatter; the result is checked below
        if exporter == "dynamo":
            batch = torch.export.Dim("N", min=1, max=1024)
            program = torch.onnx.export(
                model,
                (dummy,),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=({0: batch},),
                optimize=True,
                verbose=False,
                input_names=in_names,
                output_names=out_names,
            )
            if program is None:  # pragma: no cover - torch API guarantee
                raise ExportCheckError("torch.onnx.export returned nothing")
            proto = program.model_proto
        else:
            buf = io.BytesIO()
            torch.onnx.export(
                model,
                (dummy,),
                buf,  # type: ignore[arg-type]  # the legacy exporter writes to file-like objects too
                dynamo=False,
                opset_version=opset,
                do_constant_folding=True,
                dynamic_axes={n: {0: "N"} for n in (INPUT_NAME, *HOST_NMS_OUTPUTS)},
                input_names=in_names,
                output_names=out_names,
            )
            proto = onnx.load_from_string(buf.getvalue())
    opsets = {o.domain: o.version for o in proto.opset_import}
    if opsets.get("", opset) != opset:
        raise ExportCheckError(f"the exporter wrote opset {opsets['']} instead of {opset}")
    return proto


def _remember(key: tuple[Any, ...], proto: onnx.ModelProto) -> None:
    """Keep the last few small exports in memory (keyed by checkpoint hash and options): another
    export of the same checkpoint (another ``nms`` mode, the demo's several steps) skips the
    10-30 s of torch.export. Large models (> 64 MB) are not kept."""
    data = proto.SerializeToString()
    if len(data) > _CACHE_MAX_BYTES:
        return
    _EXPORT_CACHE[key] = data
    while sum(map(len, _EXPORT_CACHE.values())) > _CACHE_MAX_BYTES or len(_EXPORT_CACHE) > 4:
        del _EXPORT_CACHE[next(iter(_EXPORT_CACHE))]  # oldest first


def _tidy(proto: onnx.ModelProto, k: int) -> None:
    """Make the file readable by older ONNX consumers (TensorRT 8.6 ships ONNX 1.13's IR 8).

    Drops the per-node/per-value ``metadata_props`` (IR 10 only; the exporter's debug names),
    sets the IR version to the lowest the opsets allow, and declares the outputs' static sizes
    (the legacy exporter leaves K symbolic: ``N x K x 4``, ``N x K``, ``N x K``).
    """
    graph = proto.graph
    for coll in (graph.node, graph.value_info, graph.input, graph.output, graph.initializer):
        for item in coll:
            if hasattr(item, "metadata_props"):
                del item.metadata_props[:]
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    for out in graph.output:
        dims = out.type.tensor_type.shape.dim
        for d, size in zip(dims[1:], (k, 4)):
            d.dim_value = size


def _verify(data: bytes, dummy: np.ndarray, ref: list[np.ndarray], meta: ModelMeta) -> None:
    """Run the serialized graph in ONNX Runtime on ``dummy`` and compare with PyTorch's ``ref``."""
    ort = import_ort()

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    outs = dict(zip(meta.output_names, sess.run(list(meta.output_names), {INPUT_NAME: dummy})))
    if meta.nms != "host":
        n = dummy.shape[0]
        if outs[GRAPH_NMS_OUTPUTS[3]].shape != (n,):
            raise ExportCheckError(f"in-graph NMS returned num_dets of shape {outs[GRAPH_NMS_OUTPUTS[3]].shape}")
        return
    problems = compare_outputs(outs, dict(zip(HOST_NMS_OUTPUTS, ref)), meta.input_size, rtol=1e-3)
    if problems:
        raise ExportCheckError("ONNX Runtime and PyTorch disagree on the exported graph: " + "; ".join(problems))


def untied(scores: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """Mask of ``(N, K)`` descending ``scores`` whose rank is unambiguous: the gap to both
    neighbours is larger than ``rtol * score``. The last column is never untied (its neighbour,
    candidate K + 1, is not in the output)."""
    tol = rtol * np.abs(scores) + 1e-7
    gap = scores[:, :-1] - scores[:, 1:]
    prev_ok = np.ones(scores.shape, bool)
    prev_ok[:, 1:] = gap > tol[:, 1:]
    next_ok = np.zeros(scores.shape, bool)
    next_ok[:, :-1] = gap > tol[:, :-1]
    return prev_ok & next_ok


def compare_outputs(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], input_size: tuple[int, int], rtol: float = 1e-4
) -> list[str]:
    """Differences between two host-NMS outputs (``boxes``, ``scores``, ``class_ids``); [] if none.

    Scores must agree within ``rtol`` relative; where a score's rank is not tied (:func:`untied`),
    class ids must be equal and boxes agree within ``rtol`` relative to the input size.
    """
    problems = []
    for name in HOST_NMS_OUTPUTS:
        if got[name].shape != want[name].shape:
            problems.append(f"{name}: shape {got[name].shape} != {want[name].shape}")
    if problems:
        return problems
    s_got, s_want = got["scores"], want["scores"]
    if not np.allclose(s_got, s_want, rtol=rtol, atol=1e-7):
        problems.append(f"scores differ by up to {float(np.abs(s_got - s_want).max()):.3g}")
    mask = untied(s_want, rtol)
    if not np.array_equal(got["class_ids"][mask], want["class_ids"][mask]):
        problems.append(f"class ids differ at {int((got['class_ids'] != want['class_ids'])[mask].sum())} untied ranks")
    atol = rtol * max(input_size)
    diff = np.abs(got["boxes"][mask] - want["boxes"][mask])
    if diff.size and not np.all(diff <= atol + rtol * np.abs(want["boxes"][mask])):
        problems.append(f"boxes differ by up to {float(diff.max()):.3g} px at untied ranks")
    return problems


