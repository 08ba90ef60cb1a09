"""Which quantized layers cost accuracy: per-layer output error of a Q/DQ model against FP32.

As Polygraphy's precision debugging compares every layer's output of two runners, this runs the
FP32 model (after the same quantization pre-processing, so node and tensor names match) and the
Q/DQ model on a few calibration images with every quantized node's input and output tensors
marked as graph outputs, and measures the relative error power ``||q - f||² / ||f||²`` of each.
A layer's *own* contribution is its output error minus the largest error already present at its
inputs; layers are ranked by that, and the top ones are the first candidates for
``--keep-float``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.meta import INPUT_NAME, ModelMeta
from ..core.offline import import_ort


@dataclass
class LayerError:
    """Relative error power (0 = identical) of one quantized node, averaged over the images."""

    node: str
    op_type: str
    output_error: float  # at the node's output, accumulated through the network
    input_error: float  # largest at its activation inputs (before its own Q/DQ)
    own_error: float  # output_error - input_error: what this layer adds
    weight: str | None = None  # the layer's weight initializer name, when it has one

    def keep_float_pattern(self) -> str:
        """A ``--keep-float`` glob for this layer: its weight's name when the exporter gave it a
        module path (it then also covers the layer's other uses, e.g. a head shared across FPN
        levels), else exactly its node name."""
        name = self.weight if self.weight and not self.weight.startswith("onnx::") else self.node
        return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _with_outputs(model: Any, names: Sequence[str]) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
            have.add(n)
    return m


def layer_errors(
    fp32_path: str | Path, int8_path: str | Path, images: Sequence[np.ndarray], *, progress: bool = False
) -> list[LayerError]:
    """Per-layer errors of the Q/DQ model ``int8_path`` against ``fp32_path`` on uint8 ``images``
    (each one letterboxed model input batch), most harmful layer first."""
    import onnx
    ort = import_ort()

    from .calibrate import prepare_fp32
    from .placement import OP_TYPES

    qmodel = onnx.load(str(int8_path))
    with tempfile.TemporaryDirectory(prefix="detnet_trt_sens_") as tmp:
        fmodel, weights = prepare_fp32(Path(fp32_path), Path(tmp) / "prepared.onnx")
    init = {i.name for i in fmodel.graph.initializer}
    qnodes = {n.name for n in qmodel.graph.node}
    # quantized nodes: quantizable types whose inputs in the Q/DQ model come from a DequantizeLinear
    producer_q = {t: n for n in qmodel.graph.node for t in n.output}
    quantized = []
    for n in qmodel.graph.node:
        if n.op_type in OP_TYPES and any(
            producer_q.get(t) is not None and producer_q[t].op_type == "DequantizeLinear" for t in n.input
        ):
            quantized.append(n.name)
    fnodes = {n.name: n for n in fmodel.graph.node}
    layers = []
    tensors: set[str] = set()
    for name in quantized:
        fn = fnodes.get(name)
        if fn is None or name not in qnodes:
            continue
        ins = [t for t in fn.input if t and t not in init]
        layers.append((name, fn.op_type, fn.output[0], ins, weights.get(name)))
        tensors.update(ins)
        tensors.add(fn.output[0])
    tensors.discard(INPUT_NAME)
    names = sorted(tensors)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    fs = ort.InferenceSession(_with_outputs(fmodel, names).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    qs = ort.InferenceSession(_with_outputs(qmodel, names).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    num = dict.fromkeys(names, 0.0)
    den = dict.fromkeys(names, 0.0)
    for batch in images:
        fo = dict(zip([o.name for o in fs.get_outputs()], fs.run(None, {INPUT_NAME: batch})))
        qo = dict(zip([o.name for o in qs.get_outputs()], qs.run(None, {INPUT_NAME: batch})))
        for t in names:
            f = np.asarray(fo[t], np.float64)
            q = np.asarray(qo[t], np.float64)
            num[t] += float(np.sum((q - f) ** 2))
            den[t] += float(np.sum(f**2))

    def err(t: str) -> float:
        return num.get(t, 0.0) / den[t] if den.get(t, 0.0) > 0 else 0.0

    out = []
    for name, op, o, ins, w in layers:
        e_in = max((err(t) for t in ins), default=0.0)
        e_out = err(o)
        out.append(LayerError(name, op, e_out, e_in, max(0.0, e_out - e_in), w))
    out.sort(key=lambda le: le.own_error, reverse=True)
    return out


def sample_inputs(files: Sequence[Path], meta: ModelMeta, count: int = 4) -> list[np.ndarray]:
    """Up to ``count`` readable images of ``files`` letterboxed into single-image batches."""
    from .reader import LetterboxDataReader

    reader = LetterboxDataReader(list(files), meta, batch=1)
    batches: list[np.ndarray] = []
    while len(batches) < count and (b := reader.get_next()) is not None:
        batches.append(b[INPUT_NAME])
    return batches


def format_layer_table(layers: Sequence[LayerError], top: int = 10) -> str:
    width = max([4, *(len(le.node) for le in layers[:top])])
    rows = [f"  {'node':<{width}} {'op':<6} {'own err':>9} {'out err':>9}  weight"]
    for le in layers[:top]:
        rows.append(
            f"  {le.node:<{width}} {le.op_type:<6} {le.own_error:9.2e} {le.output_error:9.2e}  {le.weight or '-'}"
        )
    return "\n".join(rows)
