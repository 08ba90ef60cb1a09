"""What a built engine's layers are: precision and device per layer, from TensorRT's engine
inspector, and which network layers a build keeps in FP32.

The engine is built with ``ProfilingVerbosity.DETAILED`` (as ``trtexec --profilingVerbosity=detailed``),
so ``IEngineInspector.get_engine_information(JSON)`` lists every engine layer with its inputs'
and outputs' ``Format/Datatype`` strings ("Row major linear FP32", "Channel major FP16 format where
channel % 8 == 0", "Thirty-two wide channel vectorized row major Int8 format", ...). A layer's
precision is its first input's data type (its first output's when it has no input), the rule of
NVIDIA's TensorRT Engine Explorer (``trex``); a layer runs on the DLA when the inspector types it
``DLA`` or names it as a DLA subgraph (``{ForeignNode[...]}`` in a DLA build), as trtexec's
"Layers running on DLA" lists them. :func:`summarize` gives the counts the build prints and the
sidecar keeps. ``tensorrt`` is imported lazily, only by :func:`inspect_engine`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorrt as trt

# data type words in the inspector's Format/Datatype strings, longest first
_TYPES = (("bfloat16", "BF16"), ("uint8", "UINT8"), ("int64", "INT64"), ("int32", "INT32"), ("int8", "INT8"),
          ("fp16", "FP16"), ("half", "FP16"), ("fp32", "FP32"), ("float", "FP32"), ("fp8", "FP8"),
          ("bool", "BOOL"))


@dataclass(frozen=True)
class LayerInfo:
    """One engine layer as the inspector describes it."""

    name: str
    type: str  # the inspector's LayerType (CaskConvolution, PointWiseV2, Reformat, DLA, ...)
    precision: str  # FP32, FP16, INT8, INT32, ... or "" when it has no typed tensor
    device: str  # "GPU" or "DLA"
    tactic: str = ""

    def record(self) -> dict[str, str]:
        return asdict(self)


def data_type(fmt: str) -> str:
    """The data type in an inspector ``Format/Datatype`` string (``""`` when none is named)."""
    words = re.findall(r"[a-z0-9]+", fmt.lower())
    for word, name in _TYPES:
        if word in words:
            return name
    return ""


def parse_engine_information(text: str, dla: bool = False) -> list[LayerInfo]:
    """:class:`LayerInfo` of every layer in ``get_engine_information(LayerInformationFormat.JSON)``
    of an engine built with detailed profiling verbosity. ``dla``: the build asked for a DLA core
    (a ``{ForeignNode[...]}`` layer is then the DLA's). Raises ``ValueError`` when the text holds
    no per-layer detail (the engine was built without detailed verbosity)."""
    doc = json.loads(text)
    raw = doc.get("Layers") if isinstance(doc, dict) else None
    if not isinstance(raw, list) or not all(isinstance(layer, dict) for layer in raw):
        raise ValueError("the engine information has no layer details (built without ProfilingVerbosity.DETAILED)")
    out = []
    for layer in raw:
        name = str(layer.get("Name", ""))
        kind = str(layer.get("LayerType", ""))
        tensors = [*layer.get("Inputs", []), *layer.get("Outputs", [])]
        types = [data_type(str(t.get("Format/Datatype", ""))) for t in tensors if isinstance(t, dict)]
        precision = next((t for t in types if t), "")
        on_dla = "DLA" in kind.upper().split() or (dla and name.startswith("{ForeignNode["))
        tactic = str(layer.get("TacticName") or layer.get("TacticValue") or "")
        out.append(LayerInfo(name, kind, precision, "DLA" if on_dla else "GPU", tactic))
    return out


def summarize(layers: Iterable[LayerInfo]) -> dict[str, dict[str, int]]:
    """``{"precision": {FP16: n, INT8: m, ...}, "device": {GPU: k, DLA: l}}``: engine layers per
    precision and per device (reformat and no-op layers count too: they are work the engine does)."""
    layers = list(layers)
    return {
        "precision": dict(sorted(Counter(x.precision or "none" for x in layers).items())),
        "device": dict(sorted(Counter(x.device for x in layers).items())),
    }


def summary_line(summary: dict[str, dict[str, int]]) -> str:
    """``"42 layers: INT8 30, FP16 8, FP32 4; GPU 42"`` for the build's progress line."""
    total = sum(summary["device"].values())
    prec = ", ".join(f"{k} {v}" for k, v in sorted(summary["precision"].items(), key=lambda kv: -kv[1]))
    dev = ", ".join(f"{k} {v}" for k, v in summary["device"].items())
    return f"{total} layers: {prec}; {dev}"


def inspect_engine(engine: trt.ICudaEngine, dla: bool = False) -> list[LayerInfo]:
    """:func:`parse_engine_information` of a deserialized engine's inspector."""
    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    if inspector is None:
        raise ValueError("TensorRT gave no engine inspector")
    return parse_engine_information(inspector.get_engine_information(trt.LayerInformationFormat.JSON), dla)


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
