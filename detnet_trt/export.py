"""Checkpoint -> ONNX: the one graph that ONNX Runtime, INT8 calibration and TensorRT all use.

The graph (tensor names from :mod:`detnet_trt.meta`):

- input ``images``: uint8, ``N x 3 x H x W`` (``layout="nchw"``) or ``N x H x W x 3``
  (``"nhwc"``), BGR, N dynamic, H x W fixed. Cast, BGR -> RGB and mean/std normalisation are
  inside the graph (the model's ``forward`` does them), so the host only letterboxes.
- ``nms="host"``: ``boxes`` float32 ``N x K x 4`` (xyxy, input pixels), ``scores`` float32
  ``N x K`` (descending), ``class_ids`` int32 ``N x K``; K is the per-image top-K (``topk``).
- ``nms="onnx"``: the same top-K followed by the standard ONNX ``NonMaxSuppression`` (class-aware
  through per-class coordinate offsets, like the host's ``batched_nms``), padded to a fixed count:
  ``det_boxes`` ``N x D x 4``, ``det_scores`` ``N x D``, ``det_class_ids`` ``N x D`` int32 (rows
  past ``num_dets`` are zero) and ``num_dets`` int32 ``N``; D = ``max_det``. ONNX Runtime's
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
- The file carries :class:`~detnet_trt.meta.ModelMeta` in ``metadata_props`` (plus the
  checkpoint's sha256), read back by :func:`read_onnx_meta`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ._version import __version__
from .errors import DetnetError, InputError, ModelFileError
from .fileio import atomic_write_bytes, check_writable, sha256_file
from .meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS, INPUT_NAME, LAYOUTS, ModelMeta

TRT86_MAX_OPSET = 17
TRT_MAX_TOPK = 3840  # TensorRT's TopK layer: K <= 3840
EXPORTERS = ("dynamo", "torchscript")
EXPORT_NMS_MODES = ("host", "onnx")
# Ops whose output shape depends on input *values* (not only on input shapes).
DATA_DEPENDENT_OPS = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress", "Loop", "Scan", "If"})
_DUMMY_BATCH = 2  # export with N=2 so that nothing specialises on N=1
_EXPORT_CACHE: dict[tuple[Any, ...], bytes] = {}
_CACHE_MAX_BYTES = 64 << 20


class ExportCheckError(DetnetError):
    """An exported graph breaks the ONNX contract (op unsupported by TensorRT 8.6, dynamic shape, ...)."""


# --- the TensorRT 8.6 operator list ----------------------------------------------------------
def trt86_supported_ops() -> frozenset[str]:
    """Operators of TensorRT 8.6's ONNX parser (``detnet_trt/data/trt86_onnx_ops.txt``)."""
    text = resources.files("detnet_trt.data").joinpath("trt86_onnx_ops.txt").read_text(encoding="utf-8")
    return frozenset(line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip())


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def check_graph(model: onnx.ModelProto, meta: ModelMeta | None = None) -> list[str]:
    """Problems of ``model`` against the export contract; an empty list means it passes.

    Checks: default-domain ops only, opset <= 17 and every op in TensorRT 8.6's list; TopK's K
    and the ``axes`` inputs TensorRT needs constant are constants; no data-dependent op
    (NonMaxSuppression allowed only in an in-graph-NMS graph); the uint8 input feeds only Cast
    nodes (TensorRT 8.6 has no other op on uint8 tensors); with ``meta``, the input and output
    names, dtypes and shapes (only N symbolic).
    """
    problems: list[str] = []
    graph = model.graph
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if "ai.onnx" not in opsets:
        problems.append("no default-domain opset import")
    elif opsets["ai.onnx"] > TRT86_MAX_OPSET:
        problems.append(f"opset {opsets['ai.onnx']} > {TRT86_MAX_OPSET}, the newest TensorRT 8.6 parses")
    supported = trt86_supported_ops()
    consts = _constant_names(graph)
    allow_nms = meta is not None and meta.nms == "onnx"
    for node in graph.node:
        where = f"{node.op_type} node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r}")
            continue
        if node.op_type not in supported:
            problems.append(f"{where}: not supported by TensorRT 8.6's ONNX parser")
        if node.op_type in DATA_DEPENDENT_OPS and not (node.op_type == "NonMaxSuppression" and allow_nms):
            problems.append(f"{where}: output shape depends on data")
        if node.op_type == "TopK" and (len(node.input) < 2 or node.input[1] not in consts):
            problems.append(f"{where}: K is not a constant")
        if node.op_type in ("Slice", "Squeeze", "Unsqueeze", "ReduceSum") and len(node.input) > 1:
            axes_at = {"Slice": 3}.get(node.op_type, 1)
            if len(node.input) > axes_at and node.input[axes_at] and node.input[axes_at] not in consts:
                problems.append(f"{where}: axes are not a constant")
        if node.op_type == "Resize":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            mode = attrs.get("mode", b"nearest").decode()
            ctm = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            if mode not in ("nearest", "linear") or ctm == "tf_crop_and_resize":
                problems.append(f"{where}: Resize mode {mode!r} / {ctm!r} unsupported by TensorRT 8.6")
    uint8_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.UINT8}
    for node in graph.node:
        if node.op_type != "Cast" and uint8_inputs & set(node.input):
            problems.append(
                f"{node.op_type} node {node.name or node.output[0]!r} reads the uint8 input: TensorRT 8.6 "
                "lets a uint8 input feed only a Cast"
            )
    if meta is not None:
        problems += _check_io(graph, meta)
    return problems


def _dims(vi: onnx.ValueInfoProto) -> list[Any]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]


def _check_io(graph: onnx.GraphProto, meta: ModelMeta) -> list[str]:
    problems = []
    inputs = [i for i in graph.input if i.name not in {x.name for x in graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected [{INPUT_NAME!r}]")
    else:
        vi = inputs[0]
        if vi.type.tensor_type.elem_type != TensorProto.UINT8:
            problems.append(f"input {INPUT_NAME!r} is not uint8")
        want = list(meta.input_shape(1))[1:]
        dims = _dims(vi)
        if dims[1:] != want or isinstance(dims[0], int):
            problems.append(f"input {INPUT_NAME!r} has shape {dims}, expected [N, {', '.join(map(str, want))}]")
    outs = {o.name: o for o in graph.output}
    if list(outs) != list(meta.output_names):
        problems.append(f"outputs are {list(outs)}, expected {list(meta.output_names)}")
        return problems
    k = meta.topk if meta.nms == "host" else meta.max_det
    want_out = {
        HOST_NMS_OUTPUTS[0]: ([k, 4], TensorProto.FLOAT),
        HOST_NMS_OUTPUTS[1]: ([k], TensorProto.FLOAT),
        HOST_NMS_OUTPUTS[2]: ([k], TensorProto.INT32),
        GRAPH_NMS_OUTPUTS[0]: ([k, 4], TensorProto.FLOAT),
        GRAPH_NMS_OUTPUTS[1]: ([k], TensorProto.FLOAT),
        GRAPH_NMS_OUTPUTS[2]: ([k], TensorProto.INT32),
        GRAPH_NMS_OUTPUTS[3]: ([], TensorProto.INT32),
    }
    for name, vi in outs.items():
        shape, dtype = want_out[name]
        dims = _dims(vi)
        if not dims or dims[1:] != shape or isinstance(dims[0], int):
            problems.append(f"output {name!r} has shape {dims}, expected [N, {', '.join(map(str, shape))}]")
        if vi.type.tensor_type.elem_type != dtype:
            problems.append(f"output {name!r} has element type {vi.type.tensor_type.elem_type}, expected {dtype}")
    return problems


# --- reading the metadata back ---------------------------------------------------------------
def read_onnx_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The :class:`ModelMeta` stored in a detnet_trt ONNX file (:class:`ModelFileError` otherwise)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"ONNX file {p}: no such file", "check the path")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
        raise ModelFileError(
            f"{p} is not a readable ONNX file ({type(err).__name__})",
            "re-export it with `detnet-trt export CHECKPOINT -o model.onnx`",
        ) from err
    props = {e.key: e.value for e in model.metadata_props}
    try:
        meta = ModelMeta.from_props(props)
    except (ValueError, TypeError) as err:
        raise ModelFileError(f"{p} has corrupt detnet_trt metadata ({err})", "re-export it") from err
    if meta is None:
        raise ModelFileError(
            f"{p} has no detnet_trt metadata (class names, input size, layout)",
            "export the model with `detnet-trt export CHECKPOINT -o model.onnx`; ONNX files made by "
            "other tools cannot be used directly",
        )
    return meta


# --- export ----------------------------------------------------------------------------------
def export_onnx(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    layout: str = "nchw",
    topk: int | None = None,
    nms: str = "host",
    max_det: int = 100,
    conf: float = 0.001,
    iou: float = 0.5,
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
        max_det, conf, iou: only for ``nms="onnx"``: padded detection count, the score threshold
            and IoU threshold baked into the graph (the host may raise ``conf`` further).
        opset: 17 (TensorRT 8.6) or newer (then the TensorRT 8.6 op check is skipped).
        force: overwrite an existing ``output``.
        exporter: ``"dynamo"`` (default) or ``"torchscript"`` (torch's legacy exporter).
        verify: run the file in ONNX Runtime on a random batch and compare with PyTorch.
    """
    _check_args(layout, topk, nms, max_det, conf, iou, opset, exporter)
    if Path(output).is_dir():
        raise InputError(f"output {output} is a folder", "name the .onnx file to write")
    out = check_writable(output, force)
    from .checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint, map_location="cpu")
    sha = sha256_file(checkpoint)
    model.eval()
    model.layout = layout
    if topk is not None:
        model.topk = int(topk)
    if model.topk > TRT_MAX_TOPK:
        raise InputError(f"top-K {model.topk} is larger than TensorRT's limit {TRT_MAX_TOPK}", "pass --topk 1000")

    import torch

    meta = model.meta()
    dummy = _random_batch(meta.input_shape(_DUMMY_BATCH), seed=0)
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(dummy))]
    k = int(ref[1].shape[1])  # top-K after clamping to locations x classes
    if nms == "onnx" and max_det > k:
        raise InputError(f"--max-det {max_det} is larger than the top-K {k}", f"use --max-det <= {k}")
    key = (sha, layout, k, opset, exporter)
    if key in _EXPORT_CACHE:
        proto = onnx.load_from_string(_EXPORT_CACHE[key])
    else:
        proto = _torch_to_onnx(model, torch.from_numpy(dummy), opset, exporter)
        _tidy(proto, k)
        _remember(key, proto)
    if nms == "onnx":
        _append_nms(proto, max_det=max_det, conf=conf, iou=iou)

    meta = meta.with_updates(
        topk=k,
        nms=nms,
        max_det=max_det if nms == "onnx" else meta.max_det,
        checkpoint_sha256=sha,
        extra={
            "exporter": exporter,
            "opset": opset,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "detnet_trt": __version__,
            "checkpoint": Path(checkpoint).name,
            **({"nms_conf": conf, "nms_iou": iou} if nms == "onnx" else {}),
        },
    )
    for name, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = name, value
    proto.producer_name, proto.producer_version = "detnet_trt", __version__
    proto.doc_string = f"DetNet detector {meta.model} exported by detnet_trt {__version__}"

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportCheckError(f"the exported graph fails onnx.checker: {str(err).splitlines()[0]}") from err
    problems = check_graph(proto, meta)
    if opset > TRT86_MAX_OPSET:
        warnings.warn(f"opset {opset}: TensorRT 8.6 cannot parse this file (it reads opsets <= 17)", stacklevel=2)
        problems = [p for p in problems if "TensorRT 8.6" not in p and "opset" not in p]
    if problems:
        raise ExportCheckError("the exported graph breaks the ONNX contract: " + "; ".join(problems[:5]))
    data = proto.SerializeToString()
    if verify:
        _verify(data, dummy, ref, meta)
    return atomic_write_bytes(out, data, force=True)


def _check_args(
    layout: str, topk: int | None, nms: str, max_det: int, conf: float, iou: float, opset: int, exporter: str
) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}", f"use one of {LAYOUTS}")
    if nms not in EXPORT_NMS_MODES:
        hint = "TensorRT's EfficientNMS plugin is added to an exported file by detnet_trt.plugins" if nms == "efficient" else ""
        raise InputError(f"export supports nms in {EXPORT_NMS_MODES}, got {nms!r}", hint or None)
    if topk is not None and not 1 <= int(topk) <= TRT_MAX_TOPK:
        raise InputError(f"--topk must be in 1..{TRT_MAX_TOPK} (TensorRT's TopK limit), got {topk}")
    if not 1 <= max_det <= TRT_MAX_TOPK:
        raise InputError(f"--max-det must be in 1..{TRT_MAX_TOPK}, got {max_det}")
    if not 0.0 <= conf < 1.0 or not 0.0 < iou <= 1.0:
        raise InputError(f"need 0 <= conf < 1 and 0 < iou <= 1, got conf={conf}, iou={iou}")
    if opset < TRT86_MAX_OPSET:
        raise InputError(f"opset {opset} is too old", f"use --opset {TRT86_MAX_OPSET} (TensorRT 8.6 reads up to 17)")
    if exporter not in EXPORTERS:
        raise InputError(f"unknown exporter {exporter!r}", f"use one of {EXPORTERS}")


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


def _append_nms(proto: onnx.ModelProto, *, max_det: int, conf: float, iou: float) -> None:
    """Replace the top-K outputs by in-graph class-aware NMS padded to ``max_det`` rows.

    Class-aware through coordinate offsets: ``boxes + class_id * span`` with ``span`` the extent of
    the image's boxes plus one, so boxes of different classes never overlap (the host's
    ``batched_nms`` does the same), and one NonMaxSuppression over a single class. Its
    ``[S, 3]`` selection (the only data-dependent shape) is scattered into an ``N x K`` score map
    (-1 where not kept) and a constant-K TopK pads the result to ``N x max_det``.
    """
    g = proto.graph
    boxes, scores, cls = HOST_NMS_OUTPUTS
    nodes: list[onnx.NodeProto] = []
    inits = [
        numpy_helper.from_array(np.array(v, dtype=dt), name=f"nms/{n}")
        for n, v, dt in [
            ("axes12", [1, 2], np.int64),
            ("axis1", [1], np.int64),
            ("axis2", [2], np.int64),
            ("zero", 0.0, np.float32),
            ("one", 1.0, np.float32),
            ("half_neg", -0.5, np.float32),
            ("max_det", [max_det], np.int64),
            ("iou", [iou], np.float32),
            ("conf", [conf], np.float32),
            ("cols_bk", [0, 2], np.int64),
            ("expand4", [1, 1, 4], np.int64),
        ]
    ]

    def node(op: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any) -> list[str]:
        outs = [f"nms/{name}" + (f"_{i}" if n_out > 1 else "") for i in range(n_out)]
        nodes.append(helper.make_node(op, inputs, outs, name=f"nms/{name}", **attrs))
        return outs

    opset = {o.domain: o.version for o in proto.opset_import}[""]
    if opset >= 18:  # ReduceMax/Min take axes as an input from opset 18 on
        (bmax,) = node("ReduceMax", [boxes, "nms/axes12"], "bmax", keepdims=1)  # N x 1 x 1
        (bmin,) = node("ReduceMin", [boxes, "nms/axes12"], "bmin", keepdims=1)
    else:
        (bmax,) = node("ReduceMax", [boxes], "bmax", axes=[1, 2], keepdims=1)  # N x 1 x 1
        (bmin,) = node("ReduceMin", [boxes], "bmin", axes=[1, 2], keepdims=1)
    (bmin0,) = node("Min", [bmin, "nms/zero"], "bmin0")
    (extent,) = node("Sub", [bmax, bmin0], "extent")
    (span,) = node("Add", [extent, "nms/one"], "span")
    (cls_f,) = node("Cast", [cls], "cls_f", to=TensorProto.FLOAT)
    (cls_f3,) = node("Unsqueeze", [cls_f, "nms/axis2"], "cls_f3")  # N x K x 1
    (offset,) = node("Mul", [cls_f3, span], "offset")
    (shifted,) = node("Add", [boxes, offset], "shifted")  # N x K x 4
    (scores3,) = node("Unsqueeze", [scores, "nms/axis1"], "scores3")  # N x 1 x K
    (selected,) = node("NonMaxSuppression", [shifted, scores3, "nms/max_det", "nms/iou", "nms/conf"], "select")
    (bk,) = node("Gather", [selected, "nms/cols_bk"], "batch_box", axis=1)  # S x 2 (image, candidate)
    (kept_scores,) = node("GatherND", [scores, bk], "kept_scores")  # S
    (shape,) = node("Shape", [scores], "shape")
    (minus_one,) = node(
        "ConstantOfShape", [shape], "minus_one", value=numpy_helper.from_array(np.array([-1.0], np.float32))
    )
    (kept,) = node("ScatterND", [minus_one, bk, kept_scores], "kept")  # N x K, -1 where dropped
    k_vals, k_idx = node("TopK", [kept, "nms/max_det"], "topk", n_out=2, axis=1, largest=1, sorted=1)
    (valid,) = node("Greater", [k_vals, "nms/half_neg"], "valid")  # N x D
    (valid_i,) = node("Cast", [valid], "valid_i", to=TensorProto.INT32)
    (valid_f,) = node("Cast", [valid], "valid_f", to=TensorProto.FLOAT)
    (count,) = node("ReduceSum", [valid_f, "nms/axis1"], "count", keepdims=0)
    nodes.append(helper.make_node("Cast", [count], [GRAPH_NMS_OUTPUTS[3]], name="nms/num_dets", to=TensorProto.INT32))
    nodes.append(helper.make_node("Mul", [k_vals, valid_f], [GRAPH_NMS_OUTPUTS[1]], name="nms/det_scores"))
    (idx3,) = node("Unsqueeze", [k_idx, "nms/axis2"], "idx3")
    (idx4,) = node("Expand", [idx3, "nms/expand4"], "idx4")  # N x D x 4
    (gboxes,) = node("GatherElements", [boxes, idx4], "gboxes", axis=1)
    (valid_f3,) = node("Unsqueeze", [valid_f, "nms/axis2"], "valid_f3")
    nodes.append(helper.make_node("Mul", [gboxes, valid_f3], [GRAPH_NMS_OUTPUTS[0]], name="nms/det_boxes"))
    (gcls,) = node("GatherElements", [cls, k_idx], "gcls", axis=1)
    nodes.append(helper.make_node("Mul", [gcls, valid_i], [GRAPH_NMS_OUTPUTS[2]], name="nms/det_class_ids"))

    g.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    g.initializer.extend(t for t in inits if t.name in used)
    del g.output[:]
    f, i32 = TensorProto.FLOAT, TensorProto.INT32
    g.output.extend(
        [
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[0], f, ["N", max_det, 4]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[1], f, ["N", max_det]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[2], i32, ["N", max_det]),
            helper.make_tensor_value_info(GRAPH_NMS_OUTPUTS[3], i32, ["N"]),
        ]
    )


def _verify(data: bytes, dummy: np.ndarray, ref: list[np.ndarray], meta: ModelMeta) -> None:
    """Run the serialized graph in ONNX Runtime on ``dummy`` and compare with PyTorch's ``ref``."""
    import onnxruntime as ort

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


def graph_ops(path_or_model: str | os.PathLike[str] | onnx.ModelProto) -> list[str]:
    """Sorted distinct op types of an ONNX file or model (a helper for tests and reports)."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return sorted({n.op_type for n in model.graph.node})

