"""Q/DQ placement: which nodes get quantized. Inputs of convolutions, weights per-channel; of each
residual / FPN Add fed by a convolution, only the input that is *not* the output of the convolution
TensorRT fuses the Add into (:func:`residual_inputs`); the head and any ``--keep-float`` pattern
stay float. Which head layers stay float depends on the model kind (:func:`keeps_head_float`): the
dense detector's final score/box convolutions by default; none of the two-stage detector's.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

from ..core.errors import InputError

_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: The placement rule's version, recorded in the Q/DQ model (an output made by another is remade).
PLACEMENT = "trt-residual/1"
OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")


_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _name_nodes(model: Any) -> None:
    """Give every node a unique, non-empty name (the quantizer's node lists need names)."""
    seen: set[str] = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            base = n.name or f"{n.op_type}_{i}"
            name, k = base, 0
            while name in seen:
                k += 1
                name = f"{base}_{k}"
            n.name = name
        seen.add(n.name)


def feature_nodes(model: Any) -> tuple[set[str], list[str]]:
    """``(feature extractor node names, head's final convolutions)``.

    A node belongs to the feature extractor when some convolution lies downstream of it (so it
    feeds the backbone, neck or the head's inner convolutions), or when it is a convolution that
    itself has a convolution downstream. The head's final convolutions are the convolutions with
    no convolution downstream; they and everything after them (decode, top-k) are not features.
    """
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    conv_types = {"Conv", "ConvTranspose"}
    # reverse topological pass (ONNX node lists are topologically sorted)
    has_conv_below = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        below = False
        for t in nodes[i].output:
            for j in consumers.get(t, ()):
                if nodes[j].op_type in conv_types or has_conv_below[j]:
                    below = True
                    break
            if below:
                break
        has_conv_below[i] = below
    features = {n.name for i, n in enumerate(nodes) if has_conv_below[i]}
    finals = [n.name for i, n in enumerate(nodes) if n.op_type in conv_types and not has_conv_below[i]]
    return features, finals


def _adds_fed_by_conv(model: Any) -> set[str]:
    producer = {t: n for n in model.graph.node for t in n.output}
    return {
        n.name
        for n in model.graph.node
        if n.op_type == "Add" and any(producer.get(t) is not None and producer[t].op_type in _WEIGHT_OPS for t in n.input)
    }


def _ancestors(tensor: str, producer: dict[str, Any], skip: set[str]) -> dict[str, int]:
    """Tensor name -> fewest nodes between ``tensor`` and it, upwards (``tensor`` itself: 0; a graph
    input is a tensor too, so two branches of one input meet there; ``skip``: the weights)."""
    dist = {tensor: 0}
    frontier = [tensor]
    while frontier:
        nxt = []
        for t in frontier:
            p = producer.get(t)
            for u in p.input if p is not None else ():
                if u and u not in dist and u not in skip:
                    dist[u] = dist[t] + 1
                    nxt.append(u)
        frontier = nxt
    return dist


def _branch_lengths(a: str, b: str, producer: dict[str, Any], skip: set[str]) -> tuple[int, int] | None:
    """Nodes from tensors ``a`` and ``b`` up to their lowest common ancestor (None: none in common)."""
    da, db = _ancestors(a, producer, skip), _ancestors(b, producer, skip)
    common = [k for k in da if k in db]
    if not common:
        return None
    lca = min(common, key=lambda k: (da[k] + db[k], da[k]))
    return da[lca], db[lca]


def residual_inputs(model: Any) -> dict[str, str]:
    """Add node name -> the input tensor that is the output of the convolution TensorRT fuses the
    Add into; that input gets no Q/DQ, the Add's other input (skip branch, top-down path) does.

    NVIDIA's Q/DQ placement guidance for TensorRT: a convolution followed by an element-wise Add
    fuses into one kernel when the convolution's output feeds only the Add and the Add's *other*
    input is quantized; a Q/DQ pair between the convolution and the Add blocks the fusion. A
    fusible input is a Conv / ConvTranspose output with this Add as its only consumer (and not a
    graph output). When both inputs are fusible (a block with a projection shortcut), the one on
    the longer path from their lowest common ancestor is the main branch and is fused; the
    shortcut convolution's output stays quantized (ModelOpt's rule). Adds with no fusible input
    are not listed.
    """
    producer = {t: n for n in model.graph.node for t in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers[t] = consumers.get(t, 0) + 1
    outputs = {o.name for o in model.graph.output}
    weights = {i.name for i in model.graph.initializer} | {
        t for n in model.graph.node if n.op_type == "Constant" for t in n.output}
    conv_types = {"Conv", "ConvTranspose"}
    out: dict[str, str] = {}
    for add in model.graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        fusible = [
            t for t in add.input
            if (p := producer.get(t)) is not None and p.op_type in conv_types and consumers.get(t) == 1
            and t not in outputs and add.input[0] != add.input[1]
        ]
        if len(fusible) == 1:
            out[add.name] = fusible[0]
        elif len(fusible) == 2:
            lengths = _branch_lengths(fusible[0], fusible[1], producer, weights)
            out[add.name] = fusible[1] if lengths is not None and lengths[1] > lengths[0] else fusible[0]
    return out


def weight_name(node: Any, initializers: set[str]) -> str | None:
    """The initializer name of a Conv/Gemm/MatMul node's weight (``backbone.layer1.0.conv1.weight``
    in a dynamo export), which names the layer better than an exporter's node name."""
    if node.op_type in _WEIGHT_OPS and len(node.input) > 1 and node.input[1] in initializers:
        return str(node.input[1])
    return None


def weight_labels(model: Any) -> dict[str, str]:
    """Node name -> weight initializer name, for the nodes that have one (see :func:`weight_name`)."""
    inits = {i.name for i in model.graph.initializer}
    return {n.name: w for n in model.graph.node if (w := weight_name(n, inits))}


def match_nodes(model: Any, patterns: Sequence[str], weights: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Node names matched by each pattern: a glob over the whole node name or the node's weight
    name (``re:`` prefix: a regular expression searched in either). A pattern that matches
    nothing is an error (a typo would otherwise be silently ignored). ``weights``: node name ->
    weight name from the exported model (pre-processing renames the weights it folds)."""
    weights = weight_labels(model) if weights is None else weights
    labels = []
    for n in model.graph.node:
        w = weights.get(n.name)
        labels.append((n.name, [n.name] + ([w] if w else [])))
    names = [n for n, _ in labels]
    out: dict[str, list[str]] = {}
    for pat in patterns:
        if pat.startswith("re:"):
            try:
                rx = re.compile(pat[3:])
            except re.error as err:
                raise InputError(f"--keep-float {pat!r}: bad regular expression ({err})") from None
            hits = [n for n, keys in labels if any(rx.search(k) for k in keys)]
        else:
            hits = [n for n, keys in labels if any(fnmatch.fnmatchcase(k, pat) for k in keys)]
        if not hits:
            example = ", ".join([repr(n) for n in names if not n.startswith(("Constant", "/Constant"))][:3])
            raise InputError(
                f"--keep-float {pat!r} matches no node of the model",
                f"patterns are globs over node names (e.g. {example}) or weight names; prefix 're:' for a regex",
            )
        out[pat] = hits
    return out


def keeps_head_float(meta: Any, requested: bool = True) -> bool:
    """Whether the head's final layers stay float for a model with this metadata (a
    :class:`~detnet_trt.core.meta.ModelMeta`, or None) when ``requested``
    (:attr:`QuantizeOptions.keep_head_float`; ``--quantize-head`` clears it).

    The dense detector: as requested (its final score/box convolutions are float by default). The
    two-stage detector (``extra["detector"] == "two_stage"``): never. Its RPN score/box
    convolutions and box-head fully connected layers are INT8 like the backbone and FPN; RoI
    selection, RoIAlign, box decoding and NMS are not of the quantized op types and stay float
    (keep a layer float there with ``--keep-float``).
    """
    extra = getattr(meta, "extra", None) or {}
    return requested and extra.get("detector") != "two_stage"


def plan_quantization(
    model: Any, keep_float: Sequence[str] = (), keep_head_float: bool = True, weights: dict[str, str] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """``(nodes_to_exclude, description)`` for :func:`onnxruntime.quantization.quantize_static`."""
    weights = weight_labels(model) if weights is None else weights
    features, finals = feature_nodes(model)
    conv_adds = _adds_fed_by_conv(model)
    matched = match_nodes(model, keep_float, weights)
    user = {n for hits in matched.values() for n in hits}
    fused = residual_inputs(model)
    exclude: list[str] = []
    quantized: list[str] = []
    for n in model.graph.node:
        if n.op_type not in OP_TYPES:
            continue
        keep = n.name in user
        if keep_head_float and n.name not in features:
            keep = True
        if n.op_type == "Add" and n.name not in conv_adds:
            keep = True  # an Add TensorRT cannot fuse into a convolution gains nothing from INT8
        (exclude if keep else quantized).append(n.name)
    desc = {
        "op_types": list(OP_TYPES),
        "head_final_layers": finals if keep_head_float else [],
        "head_final_weights": sorted({weights[f] for f in finals if f in weights}) if keep_head_float else [],
        "keep_head_float": keep_head_float,
        "keep_float_patterns": list(keep_float),
        "keep_float_matched": {p: len(h) for p, h in matched.items()},
        "quantized_nodes": len(quantized),
        # Add -> its input left without Q/DQ (the output of the convolution TensorRT fuses it into)
        "residual_fused_inputs": {a: t for a, t in fused.items() if a in set(quantized)},
        "float_nodes_of_quantizable_types": len(exclude),
    }
    return exclude, desc


def _unquantize_float_inputs(model: Any, float_nodes: set[str], float_inputs: dict[str, str] | None = None) -> None:
    """Feed nodes kept in float the float tensor itself, not a Q/DQ pair made for another consumer
    of the same tensor (ONNX Runtime quantizes a tensor for all its consumers), and likewise the
    ``float_inputs`` (node name -> input tensor name, e.g. :func:`residual_inputs`) of quantized
    nodes; drop the pairs left without a consumer. Removes Q/DQ only; it never places one."""
    producer = {t: n for n in model.graph.node for t in n.output}
    float_inputs = float_inputs or {}
    for n in model.graph.node:
        if n.name not in float_nodes and n.name not in float_inputs:
            continue
        for i, t in enumerate(n.input):
            dq = producer.get(t)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear":
                continue
            if n.name in float_nodes or q.input[0] == float_inputs[n.name]:
                n.input[i] = q.input[0]
    while True:
        used = {t for n in model.graph.node for t in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type in _QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
    used = {t for n in model.graph.node for t in n.input}
    keep = [i for i in model.graph.initializer if i.name in used or not i.name.endswith(("_scale", "_zero_point"))]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def _drop_unused_opsets(model: Any) -> None:
    """Keep only the opset imports the graph uses (ONNX Runtime's optimiser adds its own
    domains; a TensorRT parser need not see them)."""
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def quantizable_nodes(model: Any, keep_float: Sequence[str] = (), keep_head_float: bool = True) -> list[str]:
    """Names of the nodes :func:`quantize_onnx` would quantize in ``model`` (an exported FP32
    ONNX, before pre-processing) with these settings (``keep_head_float`` resolved against the
    model's metadata by :func:`keeps_head_float`), in graph order."""
    from ..core.onnx_meta import meta_of

    keep_head_float = keeps_head_float(meta_of(model), keep_head_float)
    exclude = set(plan_quantization(model, keep_float, keep_head_float)[0])
    return [n.name for n in model.graph.node if n.op_type in OP_TYPES and n.name not in exclude]
