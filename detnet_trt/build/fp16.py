"""FP16-typed ONNX: what FP16 means to a strongly typed TensorRT network (11.x).

TensorRT 11 has no FP16 builder flag: a layer runs in the type its tensors have. So an FP16
engine is built from an ONNX graph whose weights and activations are float16, made by ONNX
Runtime's float16 converter (a copy of onnxconverter-common's, shipped with ``onnxruntime``)
with ``keep_io_types``: the graph still takes the uint8 image batch and returns float32 boxes and
scores, so every backend and the post-processing see the same interface. Ops that the converter
blocks by default (TopK, Min/Max, Range, ...) stay in float32 behind inserted casts. The result
also runs in ONNX Runtime on CPU (the tests compare it with the FP32 graph).
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


def convert_to_fp16(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    keep_float32_ops: Iterable[str] = (),
    force: bool = False,
) -> Path:
    """Write an FP16-typed copy of the FP32 ONNX ``src`` to ``dst`` (I/O types unchanged)."""
    import onnx
    float16 = import_ort("onnxruntime.transformers.float16")

    out = check_writable(dst, force, inputs=(src,))
    try:
        model = onnx.load(str(src))
    except Exception as err:  # noqa: BLE001 - onnx raises several types for a bad file
        raise ModelFileError(f"{src}: cannot read ONNX model ({err})", "check the path") from None
    io_before = _io_types(model)
    block = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *keep_float32_ops]))
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    if _io_types(fp16) != io_before:  # the converter promises this; the engine contract needs it
        raise ModelFileError(f"{src}: FP16 conversion changed the graph's input/output types")
    fp16 = _toposort(fp16)  # the converter appends the casts it inserts at the end of the node list
    _set_precision(fp16, "fp16")
    onnx.checker.check_model(fp16)
    seal(fp16)  # the FP16 graph's own content hash, verified by every reader
    atomic_write_bytes(out, fp16.SerializeToString(), force=True)
    return out


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
