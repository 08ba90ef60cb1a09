"""Which network layers a build keeps in FP32, and the precision / device counts of the engine it
made (TensorRT's engine inspector, read by :mod:`detnet_trt.trt.inspector`).

The engine is built with ``ProfilingVerbosity.DETAILED`` (as ``trtexec --profilingVerbosity=detailed``),
so the inspector lists every engine layer with its data types and device; :func:`engine_summary`
gives the counts the build prints and the sidecar keeps. ``tensorrt`` is imported lazily.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..trt.inspector import EngineLayers, parse_engine_information

if TYPE_CHECKING:
    import tensorrt as trt


def engine_layers(engine: trt.ICudaEngine) -> EngineLayers:
    """The inspector's layers of a freshly built engine (no execution context: the build needs no
    concrete shapes for precision and device)."""
    import tensorrt as trt

    from ..trt.inspector import InspectorError

    inspector = engine.create_engine_inspector()
    if inspector is None:
        raise InspectorError("TensorRT could not create an engine inspector for this engine")
    return parse_engine_information(str(inspector.get_engine_information(trt.LayerInformationFormat.JSON)))


def summary(layers: EngineLayers) -> dict[str, dict[str, int]]:
    """``{"precision": {INT8: n, FP16: m, ...}, "device": {GPU: k, DLA: l}}``, most first."""
    return {"precision": layers.counts("precision"), "device": layers.counts("device")}


def summary_line(counts: dict[str, dict[str, int]]) -> str:
    """``"42 layers: INT8 30, FP16 8, FP32 4; GPU 42"`` for the build's progress line."""
    total = sum(counts["device"].values())
    prec = ", ".join(f"{k} {v}" for k, v in counts["precision"].items())
    dev = ", ".join(f"{k} {v}" for k, v in counts["device"].items())
    return f"{total} layers: {prec}; {dev}"


# --- the network side: which layers a build keeps in FP32 ----------------------------------------
def fp32_picker(onnx_path: Path) -> Callable[[Any], bool]:
    """A predicate over the parsed network's layers: True for the layers of the ONNX nodes
    :func:`~.fp16.fp32_nodes` names (the decode and top-k). The ONNX parser names a node's layer
    after the node (``name``, or ``name_<n>`` for its helper layers) and its output tensors after
    the node's outputs."""
    import onnx

    from .fp16 import fp32_nodes

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = set(fp32_nodes(model))
    tensors = {t for n in model.graph.node if n.name in names for t in n.output}

    def pick(layer: Any) -> bool:
        return matches_node(str(layer.name), [layer.get_output(i).name for i in range(layer.num_outputs)],
                            names, tensors)

    return pick


def matches_node(layer_name: str, outputs: Iterable[str], names: set[str], tensors: set[str]) -> bool:
    """Whether a network layer (its name and output tensor names) belongs to one of the ONNX nodes
    ``names`` (with output tensors ``tensors``)."""
    if layer_name in names or re.sub(r"_\d+$", "", layer_name) in names:
        return True
    return any(t in tensors for t in outputs)
