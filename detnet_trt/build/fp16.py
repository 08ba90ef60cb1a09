"""FP16-typed ONNX: what FP16 means to a strongly typed TensorRT network (11.x).

TensorRT 11 has no FP16 builder flag: a layer runs in the type its tensors have. So an FP16
engine is built from an ONNX graph whose weights and activations are float16, made by ONNX
Runtime's float16 converter (a copy of onnxconverter-common's, shipped with ``onnxruntime``)
with ``keep_io_types``: the graph still takes the uint8 image batch and returns float32 boxes and
scores, so every backend and the post-processing see the same interface. The precision-sensitive
end of the graph stays float32 behind inserted casts: everything after the head's final
convolutions (:func:`fp32_nodes`: score sigmoid, box decode, top-k, gathers), and the ops the
converter blocks by default (TopK, Min/Max, Range, ...). The 8.6 / 10.x builds pin the same nodes'
layers to FP32 (:func:`~detnet_trt.trt.compat.pin_fp32`).

A Q/DQ (INT8) model becomes "INT8 where quantized, FP16 around it": the graph is moved to opset
19 first (``onnx.version_converter``), the first opset whose QuantizeLinear / DequantizeLinear
take float16 scales, so the scales become float16 and TensorRT's parser gives every
DequantizeLinear a float16 output (in a strongly typed network the scale's type is the output
type), as NVIDIA ModelOpt's FP16 mode does. A scale that float16 cannot hold within 1 % is an
error that names the way out (``--int8-fallback fp32``). The results also run in ONNX Runtime on
CPU (the tests compare them with the float32 graphs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import MissingDependencyError, ModelFileError
from ..core.fileio import atomic_write_bytes, check_writable
from ..core.offline import import_ort
from ..core.onnx_meta import meta_of, seal, set_meta

if TYPE_CHECKING:
    import onnx


#: The first opset whose QuantizeLinear / DequantizeLinear take float16 scales.
QDQ_FP16_OPSET = 19
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept float32 in an FP16 (or INT8 + FP16) engine: those after the head's
    final convolutions (no convolution downstream: score sigmoid, box decode, top-k, gathers).
    Small tensors; FP16 there would round box coordinates (0.25 px at 512) and tie scores."""
    from ..quantize.placement import feature_nodes

    features, finals = feature_nodes(model)
    skip = set(features) | set(finals)
    return [n.name for n in model.graph.node if n.name and n.name not in skip and n.op_type not in _QDQ]


def convert_to_fp16(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    keep_float32_ops: Iterable[str] = (),
    force: bool = False,
) -> Path:
    """Write an FP16-typed copy of the FP32 or Q/DQ ONNX ``src`` to ``dst`` (I/O types unchanged;
    :func:`fp32_nodes` and ``keep_float32_ops`` stay float32)."""
    import onnx
    float16 = import_ort("onnxruntime.transformers.float16")

    out = check_writable(dst, force, inputs=(src,))
    try:
        model = onnx.load(str(src))
    except Exception as err:  # noqa: BLE001 - onnx raises several types for a bad file
        raise ModelFileError(f"{src}: cannot read ONNX model ({err})", "check the path") from None
    io_before = _io_types(model)
    qdq = any(n.op_type in _QDQ for n in model.graph.node)
    if qdq:
        model = _to_qdq_fp16_opset(model, Path(src))
    block = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *keep_float32_ops]))
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                            node_block_list=fp32_nodes(model))
    if _io_types(fp16) != io_before:  # the converter promises this; the engine contract needs it
        raise ModelFileError(f"{src}: FP16 conversion changed the graph's input/output types")
    if qdq:
        _check_fp16_scales(model, fp16, Path(src))
    fp16 = _toposort(fp16)  # the converter appends the casts it inserts at the end of the node list
    _set_precision(fp16, "int8" if qdq else "fp16")
    onnx.checker.check_model(fp16)
    seal(fp16)  # the FP16 graph's own content hash, verified by every reader
    atomic_write_bytes(out, fp16.SerializeToString(), force=True)
    return out


def _to_qdq_fp16_opset(model: onnx.ModelProto, src: Path) -> onnx.ModelProto:
    """``model`` at opset :data:`QDQ_FP16_OPSET` (or above), converted op by op by ONNX's version converter."""
    import onnx
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= QDQ_FP16_OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, QDQ_FP16_OPSET)
    except Exception as err:  # noqa: BLE001 - the converter raises RuntimeError / ValueError / its own
        raise ModelFileError(
            f"{src}: cannot move the Q/DQ graph from opset {opset} to {QDQ_FP16_OPSET} for FP16 around INT8 ({err})",
            "build with --int8-fallback fp32 (FP32 around the INT8 layers)",
        ) from None
    converted.ir_version = max(model.ir_version, converted.ir_version)
    onnx.checker.check_model(converted)
    return converted


def _check_fp16_scales(before: onnx.ModelProto, after: onnx.ModelProto, src: Path) -> None:
    """Every Q/DQ scale that became float16 holds its float32 value within 1 %, or an error."""
    from onnx import numpy_helper

    old = {i.name: i for i in before.graph.initializer}
    new = {i.name: i for i in after.graph.initializer}
    scales = {n.input[1] for n in after.graph.node if n.op_type in _QDQ and len(n.input) > 1}
    bad = []
    for name in sorted(scales & set(new) & set(old)):
        a = numpy_helper.to_array(old[name]).astype("float64")
        b = numpy_helper.to_array(new[name]).astype("float64")
        if a.shape != b.shape or not ((b > 0) & (abs(b - a) <= 0.01 * abs(a))).all():
            bad.append(name)
    if bad:
        raise ModelFileError(
            f"{src}: {len(bad)} INT8 scale(s) do not fit float16 (e.g. {bad[0]}): FP16 around the INT8 layers "
            "would change what they compute",
            "build with --int8-fallback fp32 (FP32 around the INT8 layers)",
        )


def is_fp16_onnx(path: str | os.PathLike[str]) -> bool:
    """Whether the graph's weights are (mostly) float16."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kinds = [t.data_type for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    return bool(kinds) and kinds.count(onnx.TensorProto.FLOAT16) > len(kinds) // 2


def _toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnx_graphsurgeon as gs
    except ImportError:
        raise MissingDependencyError(
            "onnx-graphsurgeon is not installed, the FP16-typed ONNX for TensorRT 11 needs it",
            "pip install 'detnet-trt[tensorrt]'",
        ) from None
    graph = gs.import_onnx(model)
    graph.toposort()
    sorted_model = gs.export_onnx(graph)
    sorted_model.ir_version = model.ir_version
    del sorted_model.metadata_props[:]
    sorted_model.metadata_props.extend(model.metadata_props)
    return sorted_model


def _io_types(model: onnx.ModelProto) -> list[tuple[str, int]]:
    graph = model.graph
    return [(v.name, v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output]]


def _set_precision(model: onnx.ModelProto, precision: str) -> None:
    meta = meta_of(model)
    if meta is None:
        return
    set_meta(model, meta.with_updates(precision=precision))
