"""What is inside a TensorRT engine, from TensorRT's engine inspector (``IEngineInspector``).

:func:`engine_information` asks a deserialized engine, with an execution context whose input
shape is set (so formats and dimensions are concrete), for its layer information in
``LayerInformationFormat.JSON``; :func:`parse_engine_information` turns that JSON into
:class:`EngineLayers`: per layer its name, type, precision, device and tactic. The parsing is pure
Python (tested on CPU against JSON of the documented shapes); only :func:`engine_information`
touches TensorRT.

What the JSON holds depends on the profiling verbosity the engine was *built* with
(``IBuilderConfig.profiling_verbosity``): ``DETAILED`` gives one object per layer (``Name``,
``LayerType``, ``ParameterType``, ``Inputs`` / ``Outputs`` with ``Format/Datatype``,
``TacticName`` / ``TacticValue``, ...); the default ``LAYER_NAMES_ONLY`` gives only the layer
names (``{"Layers": ["name", ...]}``), which :class:`EngineLayers` reports as
``detailed=False``; ``NONE`` gives no layers at all.

The fields, as read here (TensorRT's JSON is not a versioned schema; missing fields read as
unknown, never as an error):

- **type**: ``ParameterType`` (the network layer kind: ``Convolution``, ``PointWise``, ``Reformat``,
  ...), else ``LayerType`` (the implementation: ``CaskConvolution``, ``Myelin``, ``DLA``, ...);
- **precision**: the data type in the first input's ``Format/Datatype`` (``"Row major linear FP32"``
  -> ``FP32``, ``"Channel major FP16 format where channel % 8 == 0"`` -> ``FP16``, ``"Thirty-two wide
  channel vectorized row major Int8 format"`` -> ``INT8``), else the first output's (as
  trt-engine-explorer reads it);
- **device**: ``DLA`` for a layer TensorRT implemented on the DLA (``LayerType`` ``DLA``: the
  ``{ForeignNode[...]}`` subgraphs the DLA runs), ``GPU`` otherwise (the reformats that move
  tensors to and from DLA memory run on the GPU);
- **tactic**: ``TacticName`` (the kernel), else ``TacticValue``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import DetnetError

#: Data-type words in TensorRT's ``Format/Datatype`` descriptions -> the precision reported.
_DTYPE_WORDS = {
    "fp32": "FP32", "float": "FP32", "fp16": "FP16", "half": "FP16", "bfloat16": "BF16", "bf16": "BF16",
    "int8": "INT8", "uint8": "UINT8", "int32": "INT32", "int64": "INT64", "fp8": "FP8", "bool": "BOOL",
    "int4": "INT4", "fp4": "FP4", "double": "FP64",
}
_DTYPE_RE = re.compile(r"\b(" + "|".join(sorted(_DTYPE_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


class InspectorError(DetnetError):
    """The engine inspector's output cannot be read."""


@dataclass(frozen=True)
class LayerInfo:
    """One layer of an engine as the inspector describes it ("" where it does not say)."""

    name: str
    type: str = ""
    implementation: str = ""  # LayerType
    precision: str = ""
    output_precision: str = ""
    device: str = ""  # "GPU" / "DLA"; "" without detail
    tactic: str = ""


@dataclass(frozen=True)
class EngineLayers:
    """All layers of an engine, with the engine's I/O tensor names (``Bindings``)."""

    layers: list[LayerInfo]
    bindings: list[str] = field(default_factory=list)
    detailed: bool = True  # False: the engine was built without detailed profiling verbosity

    def counts(self, key: str) -> dict[str, int]:
        """How many layers per value of ``key`` (``"precision"``, ``"device"``, ``"type"``), most first."""
        return dict(Counter(getattr(layer, key) or "?" for layer in self.layers).most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "detailed": self.detailed,
            "num_layers": len(self.layers),
            "bindings": list(self.bindings),
            "counts": {k: self.counts(k) for k in ("device", "precision", "type")} if self.detailed else {},
            "layers": [asdict(layer) for layer in self.layers],
        }


def precision_of(format_datatype: str) -> str:
    """The data type named in a ``Format/Datatype`` description (``""`` when none is)."""
    m = _DTYPE_RE.search(format_datatype or "")
    return _DTYPE_WORDS[m.group(1).lower()] if m else ""


def _first_precision(tensors: Any) -> str:
    if isinstance(tensors, list):
        for t in tensors:
            if isinstance(t, dict):
                p = precision_of(str(t.get("Format/Datatype", "")))
                if p:
                    return p
    return ""


def _tactic(raw: dict[str, Any]) -> str:
    for key in ("TacticName", "TacticValue"):
        value = raw.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def _layer(raw: Any, index: int) -> LayerInfo:
    if isinstance(raw, str):  # LAYER_NAMES_ONLY
        return LayerInfo(name=raw)
    if not isinstance(raw, dict):
        raise InspectorError(f"engine inspector: layer {index} is a {type(raw).__name__}, expected an object or a name")
    impl = str(raw.get("LayerType", ""))
    inputs, outputs = _first_precision(raw.get("Inputs")), _first_precision(raw.get("Outputs"))
    return LayerInfo(
        name=str(raw.get("Name", f"<layer {index}>")),
        type=str(raw.get("ParameterType") or impl),
        implementation=impl,
        precision=inputs or outputs,
        output_precision=outputs,
        device="DLA" if "dla" in impl.lower() else "GPU",
        tactic=_tactic(raw),
    )


def parse_engine_information(text: str) -> EngineLayers:
    """Parse ``get_engine_information(LayerInformationFormat.JSON)``; :class:`InspectorError` when
    it is not that JSON."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise InspectorError(f"engine inspector output is not JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise InspectorError("engine inspector output has no 'Layers' list")
    raw_layers = data["Layers"]
    layers = [_layer(raw, i) for i, raw in enumerate(raw_layers)]
    detailed = bool(layers) and all(isinstance(raw, dict) for raw in raw_layers)
    bindings = [str(b) for b in data.get("Bindings", []) if isinstance(b, str)]
    return EngineLayers(layers, bindings, detailed)


def format_layers(info: EngineLayers, limit: int | None = None) -> str:
    """A plain-text table: one row per layer, then the device / precision counts."""
    if not info.layers:
        return "no layer information (the engine was built with profiling verbosity NONE)"
    rows = [("#", "layer", "type", "precision", "device", "tactic")]
    shown = info.layers if limit is None else info.layers[:limit]
    for i, layer in enumerate(shown):
        rows.append((str(i), _cut(layer.name, 60), layer.type, layer.precision, layer.device, _cut(layer.tactic, 50)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if limit is not None and len(info.layers) > limit:
        lines.append(f"... {len(info.layers) - limit} more layers (all of them in --json)")
    if info.detailed:
        for key in ("device", "precision"):
            lines.append(f"{key}: " + ", ".join(f"{v} {n}" for v, n in info.counts(key).items()))
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def engine_information(engine: Any, context: Any) -> str:
    """The inspector's JSON for ``engine``, with ``context`` (input shapes set) as the inspection
    source so that dimensions and formats are concrete (TensorRT 8.6 .. 11.x: same calls)."""
    import tensorrt as trt

    inspector: Any = engine.create_engine_inspector()
    if inspector is None:
        raise InspectorError("TensorRT could not create an engine inspector for this engine")
    inspector.execution_context = context
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
