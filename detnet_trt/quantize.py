"""INT8 post-training quantization: FP32 ONNX + calibration set -> Q/DQ ONNX.

The quantizer is ONNX Runtime's static QDQ quantizer (``onnxruntime.quantization``), configured
for TensorRT's explicit quantization (NVIDIA's guidance for CNNs):

- ``QuantFormat.QDQ``; signed INT8 weights **per output channel** and INT8 activations, both
  **symmetric** (every zero point is 0, as TensorRT requires); conv biases stay float.
- Q/DQ on the inputs of the convolutions and of the ``Add`` nodes fed by a convolution (residual
  and FPN adds that TensorRT fuses into the convolution); a dedicated Q/DQ pair per consumer.
- Only the feature extractor is quantized: the head's final convolutions (those with no
  convolution downstream: class scores and box regression) and everything after them (sigmoid,
  box decode, top-k) stay float, as does the in-graph cast and normalisation. ``keep_float``
  patterns (globs over node names; ``re:`` prefix for a regular expression) keep more in float.

Calibration feeds the calibration set through :class:`~detnet_trt.preprocess.Letterboxer`, the
runtime's own letterbox, and ONNX Runtime, one batch at a time so that histogram methods
(``entropy``, ``percentile``) never hold the activations of the whole set in memory. The tensor ranges can be
kept in a calibration cache; the cache and the written model carry their provenance (FP32 ONNX
sha256, calibration set sha256 and image-data sha256, method, pre-processing), and a cache or an
existing output made from anything else is refused with a message, never reused silently.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import inspect
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibset import CalibSet, read_calib_set
from .errors import DetnetError, IncompatibleError, InputError, MissingDependencyError, ModelFileError
from .fileio import atomic_write_bytes, atomic_write_text, check_writable, sha256_file
from .meta import INPUT_NAME, META_PREFIX, ModelMeta

METHODS = ("entropy", "minmax", "percentile")
FORMAT = "detnet_trt.int8/1"
CACHE_FORMAT = "detnet_trt.calib_cache/1"
OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DEFAULT_PERCENTILE = 99.999
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

log = logging.getLogger(__name__)


# --- small helpers ----------------------------------------------------------------------------
def _onnx() -> Any:
    import onnx

    return onnx


def _load(path: Path) -> Any:
    onnx = _onnx()
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file", "pass the FP32 ONNX written by detnet-trt export")
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file
        raise ModelFileError(f"{path} is not a readable ONNX file ({err})", "re-export it with detnet-trt export") from None


def _props(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def is_qdq_onnx(path: str | os.PathLike[str]) -> bool:
    """True when the ONNX file at ``path`` contains QuantizeLinear/DequantizeLinear nodes."""
    model = _load(Path(path))
    return any(n.op_type in _QDQ_OPS for n in model.graph.node)


def read_quant_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``quantization`` provenance stored in a Q/DQ ONNX written by :func:`quantize_onnx`."""
    meta = ModelMeta.from_props(_props(_load(Path(path))))
    if meta is None:
        return None
    prov = meta.extra.get("quantization")
    return prov if isinstance(prov, dict) else None


def preprocessing_id(meta: ModelMeta) -> dict[str, Any]:
    """What the calibration images went through, including a hash of the letterbox code, so that a
    change of the runtime's pre-processing makes older calibration results stale."""
    from . import preprocess

    src = inspect.getsource(preprocess.letterbox_geometry) + inspect.getsource(preprocess.letterbox_into)
    return {
        "function": "detnet_trt.preprocess.Letterboxer (letterbox_into)",
        "code_sha256": hashlib.sha256(src.encode("utf-8")).hexdigest(),
        "pad_value": preprocess.PAD_VALUE,
        "input_size": list(meta.input_size),
        "layout": meta.layout,
        "channel_order": meta.channel_order,
        "in_graph": {"mean": list(meta.mean), "std": list(meta.std)},
    }


def _describe_mismatch(want: dict[str, Any], got: dict[str, Any], keys: Sequence[str]) -> list[str]:
    out = []
    for k in keys:
        if want.get(k) != got.get(k):
            a, b = got.get(k), want.get(k)
            if isinstance(a, str) and isinstance(b, str) and len(a) == 64 and len(b) == 64:
                a, b = a[:12], b[:12]
            out.append(f"{k}: made with {a!r}, now {b!r}")
    return out


# --- calibration data ---------------------------------------------------------------------------
def _hash_images(files: Sequence[Path]) -> tuple[str, list[tuple[Path, str]]]:
    """sha256 over the bytes of the readable files in order; unreadable files are listed."""
    from .calibset import is_readable_image

    h = hashlib.sha256()
    bad: list[tuple[Path, str]] = []
    for f in files:
        why = is_readable_image(f)
        if why is not None:
            bad.append((f, why))
            continue
        h.update(f.name.encode("utf-8") + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest(), bad


class LetterboxDataReader:
    """An ONNX Runtime ``CalibrationDataReader`` over image files through the runtime's letterbox.

    Yields ``{"images": uint8 batch}``; unreadable images are skipped and recorded in
    ``skipped``. ``set_range`` limits it to a slice of the files (chunked calibration).
    """

    def __init__(self, files: Sequence[Path], meta: ModelMeta, batch: int = 1, progress: Any = None) -> None:
        from .preprocess import Letterboxer

        self.files = list(files)
        self.letterboxer = Letterboxer(meta.input_size, meta.layout, max_batch=batch)
        self.batch = batch
        self.progress = progress
        self.skipped: list[tuple[Path, str]] = []
        self.used = 0
        self._it: Iterator[dict[str, np.ndarray]] | None = None
        self._range = (0, len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, len(self.files)))
        self._it = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        import cv2

        frames: list[np.ndarray] = []
        for f in self.files[self._range[0] : self._range[1]]:
            img = None
            try:
                data = np.fromfile(str(f), dtype=np.uint8)
                img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            except OSError:
                img = None
            if self.progress is not None:
                self.progress.update(1)
            if img is None:
                self.skipped.append((f, "cannot read or decode"))
                continue
            frames.append(img)
            if len(frames) == self.batch:
                yield self._emit(frames)
                frames = []
        if frames:
            yield self._emit(frames)

    def _emit(self, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
        batch, _ = self.letterboxer.fill(frames)
        self.used += len(frames)
        return {INPUT_NAME: batch.copy()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


# --- which nodes to quantize ----------------------------------------------------------------------
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


def plan_quantization(
    model: Any, keep_float: Sequence[str] = (), keep_head_float: bool = True, weights: dict[str, str] | None = None
) -> tuple[list[str], dict[str, Any]]:
    """``(nodes_to_exclude, description)`` for :func:`onnxruntime.quantization.quantize_static`."""
    weights = weight_labels(model) if weights is None else weights
    features, finals = feature_nodes(model)
    conv_adds = _adds_fed_by_conv(model)
    matched = match_nodes(model, keep_float, weights)
    user = {n for hits in matched.values() for n in hits}
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
        "float_nodes_of_quantizable_types": len(exclude),
    }
    return exclude, desc


def _unquantize_float_inputs(model: Any, float_nodes: set[str]) -> None:
    """Feed nodes kept in float the float tensor itself, not a Q/DQ pair made for another consumer
    of the same tensor (ONNX Runtime quantizes a tensor for all its consumers), and drop the pairs
    left without a consumer. Removes Q/DQ only; it never places one."""
    producer = {t: n for n in model.graph.node for t in n.output}
    for n in model.graph.node:
        if n.name not in float_nodes:
            continue
        for i, t in enumerate(n.input):
            dq = producer.get(t)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
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
    ONNX, before pre-processing) with these settings, in graph order."""
    exclude = set(plan_quantization(model, keep_float, keep_head_float)[0])
    return [n.name for n in model.graph.node if n.op_type in OP_TYPES and n.name not in exclude]


# --- the pipeline -------------------------------------------------------------------------------------
def prepare_fp32(model_path: Path, out_path: Path) -> tuple[Any, dict[str, str]]:
    """ONNX Runtime's quantization pre-processing (shape inference + basic graph optimisation,
    which folds batch norms into convolutions), after naming unnamed nodes. Returns the model and
    the exported model's weight names of its nodes (folding renames weights; node names stay)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx = _onnx()
    model = _load(model_path)
    _name_nodes(model)
    weights = weight_labels(model)
    named = out_path.with_name(out_path.stem + ".named.onnx")
    onnx.save(model, str(named))
    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(named), str(out_path), skip_symbolic_shape=True)
    prepared = onnx.load(str(out_path))
    _name_nodes(prepared)
    onnx.save(prepared, str(out_path))
    return prepared, weights


def _fp32_meta(model: Any, path: Path) -> ModelMeta:
    meta = ModelMeta.from_props(_props(model))
    if meta is None:
        raise ModelFileError(
            f"{path} carries no detnet_trt metadata", "quantize the ONNX written by detnet-trt export"
        )
    if any(n.op_type in _QDQ_OPS for n in model.graph.node) or meta.precision == "int8":
        raise InputError(
            f"{path} is already quantized (it has Q/DQ nodes)", "quantize the FP32 ONNX written by detnet-trt export"
        )
    return meta


def ort_has_cache_api() -> bool:
    """Whether this onnxruntime's ``quantize_static`` takes ``calibration_cache_path`` (older ones
    calibrate inside ``quantize_static``; ranges can then be neither cached nor reused)."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _ort_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]


def _calibrate(
    prepared: Path,
    reader: LetterboxDataReader,
    method: str,
    percentile: float,
    workdir: Path,
) -> dict[str, Any]:
    """Run the calibrator batch by batch; returns ONNX Runtime's TensorsData as a JSON-able dict."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    options: dict[str, Any] = {"symmetric": True}
    if method == "percentile":
        options["percentile"] = percentile
    with contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(
            prepared,
            list(OP_TYPES),
            augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=_ort_method(method),
            extra_options=options,
        )
        # one collect_data call per batch: histogram methods then hold one batch of activations
        while (inputs := reader.get_next()) is not None:
            calibrator.collect_data(_OneShot(inputs))
        if reader.used == 0:
            raise InputError("no calibration image could be read", "check the calibration set's images")
        tensors = calibrator.compute_data()
    return json.loads(json.dumps(tensors.to_dict(), cls=CalibrationCacheEncoder))


class _OneShot:
    """A CalibrationDataReader that yields one batch (keeps each collect_data call small)."""

    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self._inputs: dict[str, np.ndarray] | None = inputs

    def get_next(self) -> dict[str, np.ndarray] | None:
        out, self._inputs = self._inputs, None
        return out


_CACHE_KEYS = ("fp32_sha256", "calib_set_sha256", "calib_data_sha256", "method", "percentile", "preprocessing",
               "op_types", "onnxruntime")


def _cache_provenance(base: dict[str, Any]) -> dict[str, Any]:
    return {k: base[k] for k in _CACHE_KEYS}


def _read_cache(path: Path, want: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IncompatibleError(f"calibration cache {path} is unreadable ({err})", "delete it to recalibrate") from None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise IncompatibleError(
            f"{path} is not a detnet_trt calibration cache", "pass another --calib-cache path, or delete the file"
        )
    diff = _describe_mismatch(want, data.get("provenance", {}), _CACHE_KEYS)
    if diff:
        raise IncompatibleError(
            f"calibration cache {path} was made for another model, set or pre-processing ({'; '.join(diff)})",
            "delete the cache (or pass a new --calib-cache path) to recalibrate",
        )
    return data["ranges"]


def check_quantized(path: str | os.PathLike[str], *, fp32: str | os.PathLike[str] | None = None,
                    calib: str | os.PathLike[str] | CalibSet | None = None) -> dict[str, Any]:
    """Verify that the Q/DQ ONNX at ``path`` was made from ``fp32`` and/or calibration set ``calib``.

    Returns its provenance; raises :class:`IncompatibleError` naming what differs. For callers
    that are handed a quantized model (the TensorRT build) and must not use a stale one.
    """
    p = Path(path)
    prov = read_quant_provenance(p)
    if prov is None:
        raise IncompatibleError(f"{p} has no detnet_trt quantization provenance", "make it with detnet-trt quantize")
    problems = []
    if fp32 is not None and prov.get("fp32_sha256") != sha256_file(fp32):
        problems.append(f"it was quantized from another FP32 ONNX than {fp32}")
    if calib is not None:
        cs = calib if isinstance(calib, CalibSet) else read_calib_set(calib)
        if prov.get("calib_set_sha256") != cs.sha256:
            problems.append(f"it was calibrated on another set than {cs.path or 'the given set'}")
    if problems:
        raise IncompatibleError(f"{p}: {'; '.join(problems)}", "re-run detnet-trt quantize with --force")
    return prov


def quantize_onnx(
    model: str | os.PathLike[str],
    calib: str | os.PathLike[str] | CalibSet,
    output: str | os.PathLike[str],
    *,
    method: str = "entropy",
    keep_float: Sequence[str] = (),
    force: bool = False,
    progress: bool = True,
    keep_head_float: bool = True,
    percentile: float = DEFAULT_PERCENTILE,
    calib_cache: str | os.PathLike[str] | None = None,
    calib_images: str | os.PathLike[str] | None = None,
    batch: int = 1,
    min_images: int = 1,
) -> Path:
    """Quantize the FP32 ONNX ``model`` to a Q/DQ INT8 ONNX at ``output`` (see the module docstring).

    ``calib``: a set file (``detnet-trt calib-set``) or a :class:`CalibSet`; ``calib_images``
    overrides the folder its paths are relative to. ``calib_cache``: a JSON file of tensor ranges,
    written after calibration and reused (only) when its provenance matches. An existing
    ``output`` is reused when its provenance matches these inputs, refused otherwise unless
    ``force``. Unreadable calibration images are skipped and counted (warning); fewer than
    ``min_images`` readable ones is an error.
    """
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}", f"use one of {', '.join(METHODS)}")
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src = Path(model)
    fp32 = _load(src)
    meta = _fp32_meta(fp32, src)
    cs = calib if isinstance(calib, CalibSet) else read_calib_set(calib, calib_images)
    out = Path(output)
    keep_float = list(keep_float)

    data_sha, unreadable = _hash_images(cs.files)
    provenance: dict[str, Any] = {
        "format": FORMAT,
        "fp32_file": src.name,
        "fp32_sha256": sha256_file(src),
        "calib_set_file": cs.path.name if cs.path else None,
        "calib_set_sha256": cs.sha256,
        "calib_data_sha256": data_sha,
        "calib_images": len(cs.files) - len(unreadable),
        "calib_skipped": len(unreadable),
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "preprocessing": preprocessing_id(meta),
        "op_types": list(OP_TYPES),
        "onnxruntime": onnxruntime.__version__,
    }
    if out.exists() and not force:
        old = read_quant_provenance(out) if out.suffix == ".onnx" else None
        want = dict(provenance, keep_float=keep_float, keep_head_float=keep_head_float)
        keys = (*_CACHE_KEYS, "keep_float", "keep_head_float")
        if old is not None and not _describe_mismatch(want, old, keys):
            log.warning("%s is up to date (same FP32 model, calibration set, method and settings): reusing it", out)
            return out
        why = "; ".join(_describe_mismatch(want, old, keys)) if old else "it is not a detnet_trt Q/DQ ONNX"
        raise IncompatibleError(f"{out} exists and was not made from these inputs ({why})", "pass --force to overwrite it")
    check_writable(out, force)
    if unreadable:
        names = ", ".join(f"{f.name} ({why})" for f, why in unreadable[:10])
        more = f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
        log.warning("calibration: skipped %d unreadable image(s): %s%s", len(unreadable), names, more)
    if provenance["calib_images"] < max(1, min_images):
        raise InputError(
            f"only {provenance['calib_images']} of {len(cs.files)} calibration images are readable "
            f"(need at least {max(1, min_images)})",
            "check the calibration set's images folder (--calib-images)",
        )

    with tempfile.TemporaryDirectory(prefix="detnet_trt_quant_") as tmp:
        work = Path(tmp)
        prepared_path = work / "prepared.onnx"
        prepared, weights = prepare_fp32(src, prepared_path)
        exclude, plan = plan_quantization(prepared, keep_float, keep_head_float, weights)

        cache_path = Path(calib_cache) if calib_cache is not None else None
        cache_prov = _cache_provenance(provenance)
        has_cache_api = ort_has_cache_api()
        if cache_path is not None and not has_cache_api:
            raise MissingDependencyError(
                f"--calib-cache needs an onnxruntime whose quantize_static takes calibration_cache_path "
                f"(this is {onnxruntime.__version__})",
                "upgrade onnxruntime, or quantize without --calib-cache",
            )
        ranges: dict[str, Any] | None = None
        if not has_cache_api:
            pass
        elif cache_path is not None and cache_path.exists():
            ranges = _read_cache(cache_path, cache_prov)
            log.info("calibration: reusing tensor ranges from %s", cache_path)
        else:
            from tqdm import tqdm

            with tqdm(total=len(cs.files), desc=f"calibrating ({method})", unit="img", disable=not progress) as bar:
                reader = LetterboxDataReader(cs.files, meta, batch=batch, progress=bar)
                ranges = _calibrate(prepared_path, reader, method, percentile, work)
            if cache_path is not None:
                payload = {"format": CACHE_FORMAT, "provenance": cache_prov, "ranges": ranges}
                atomic_write_text(cache_path, json.dumps(payload), force=True)
        ort_cache = work / "ranges.json"
        if ranges is not None:
            ort_cache.write_text(json.dumps(ranges), encoding="utf-8")

        extra_options: dict[str, Any] = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,  # TensorRT takes float biases
            "DedicatedQDQPair": True,  # one Q/DQ pair per consumer, as TensorRT's fusions expect
            "OpTypesToExcludeOutputQuantization": list(OP_TYPES),  # Q/DQ on inputs only
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1, "Gemm": 0},
        }
        q_path = work / "quantized.onnx"
        if has_cache_api:
            source: dict[str, Any] = {"calibration_data_reader": None, "calibration_cache_path": str(ort_cache)}
        else:  # older onnxruntime calibrates itself, over the same letterboxed images
            from tqdm import tqdm

            bar = tqdm(total=len(cs.files), desc=f"calibrating ({method})", unit="img", disable=not progress)
            source = {"calibration_data_reader": LetterboxDataReader(cs.files, meta, batch=batch, progress=bar)}
            extra_options.update(CalibTensorRangeSymmetric=True)
            if method == "percentile":
                extra_options["CalibPercentile"] = percentile
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared_path),
                str(q_path),
                **source,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(OP_TYPES),
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=_ort_method(method),
                extra_options=extra_options,
            )
        onnx = _onnx()
        qmodel = onnx.load(str(q_path))
        _unquantize_float_inputs(qmodel, set(exclude))
        _drop_unused_opsets(qmodel)

    provenance.update(
        keep_float=keep_float,
        keep_head_float=keep_head_float,
        plan=plan,
        quantizer={
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "per_channel": True,
            "weights": "int8 symmetric per-channel",
            "activations": "int8 symmetric per-tensor",
            "extra_options": extra_options,
        },
    )
    extra = dict(meta.extra)
    extra["quantization"] = provenance
    new_meta = meta.with_updates(precision="int8", extra=extra)
    keep = [(p.key, p.value) for p in qmodel.metadata_props if not p.key.startswith(META_PREFIX)]
    del qmodel.metadata_props[:]
    for k, v in [*keep, *new_meta.to_props().items()]:
        entry = qmodel.metadata_props.add()
        entry.key, entry.value = k, v
    qmodel.producer_name = "detnet_trt.quantize (onnxruntime.quantization)"
    from .export import check_graph

    problems = check_graph(qmodel, new_meta)
    if problems:
        log.warning("%s may not build with TensorRT 8.6: %s", out, "; ".join(problems[:5]))
    atomic_write_bytes(out, qmodel.SerializeToString(), force=True)
    return out


# --- accuracy gate --------------------------------------------------------------------------------
AP_BUDGET = 0.3  # AP points (0-100 scale); NVIDIA's and mmdeploy's published INT8 detector losses: 0.2-0.3


class AccuracyDropError(DetnetError):
    """The INT8 model lost more AP than ``--max-ap-drop`` allows."""

    exit_code = 3


@dataclass
class AccuracyReport:
    """FP32 vs INT8 COCO metrics (0-100) and, over budget, the layers to keep in float."""

    fp32: dict[str, float]
    int8: dict[str, float]
    budget: float
    sensitive: list[Any] = field(default_factory=list)  # sensitivity.LayerError, most harmful first
    fix_patterns: list[str] = field(default_factory=list)
    fix_drop: float | None = None  # AP drop measured with fix_patterns kept float (None: none found)
    fix_tries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drop(self) -> float:
        return self.fp32["AP"] - self.int8["AP"]

    @property
    def over_budget(self) -> bool:
        return self.drop > self.budget

    def table(self) -> str:
        rows = [f"  {'':<6} {'AP':>7} {'AP50':>7} {'AP75':>7}"]
        for name, m in (("FP32", self.fp32), ("INT8", self.int8)):
            rows.append(f"  {name:<6} {m['AP']:7.2f} {m['AP50']:7.2f} {m['AP75']:7.2f}")
        d = {k: self.int8[k] - self.fp32[k] for k in ("AP", "AP50", "AP75")}
        rows.append(f"  {'delta':<6} {d['AP']:+7.2f} {d['AP50']:+7.2f} {d['AP75']:+7.2f}   (budget: -{self.budget:.2f} AP)")
        return "\n".join(rows)

    def advice(self) -> str:
        if not self.over_budget:
            return f"INT8 is within the {self.budget:.2f} AP budget (drop {self.drop:.2f} AP)."
        lines = [f"WARNING: INT8 loses {self.drop:.2f} AP, over the {self.budget:.2f} AP budget."]
        if self.sensitive:
            from .sensitivity import format_layer_table

            lines += ["Most sensitive layers (relative error power vs FP32 on calibration images):",
                      format_layer_table(self.sensitive, top=5)]
        flags = " ".join(f"--keep-float '{p}'" for p in self.fix_patterns)
        if self.fix_patterns and self.fix_drop is not None and self.fix_drop <= self.budget:
            lines.append(f"Keeping them in float fixes it (measured drop {self.fix_drop:.2f} AP): re-run with {flags}")
        elif self.fix_patterns:
            got = f"{self.fix_drop:.2f}" if self.fix_drop is not None else "?"
            lines.append(f"Keeping the top layers in float was tried (best drop {got} AP, still over budget): "
                         f"try {flags} plus more layers from the table, or --method percentile / minmax")
        return "\n".join(lines)


def _ap(model: Path, ann: Path, images: Path, progress: bool, max_images: int | None) -> dict[str, float]:
    from .evaluation import evaluate

    return evaluate(model, ann, images, progress=progress, max_images=max_images).metrics


def accuracy_check(
    fp32: str | os.PathLike[str],
    int8: str | os.PathLike[str],
    val_data: str | os.PathLike[str],
    *,
    calib: str | os.PathLike[str] | CalibSet | None = None,
    budget: float = AP_BUDGET,
    max_ap_drop: float | None = None,
    split: str = "val",
    progress: bool = True,
    max_images: int | None = None,
    calib_cache: str | os.PathLike[str] | None = None,
    sensitivity_images: int = 4,
    fix_steps: Sequence[int] = (1, 3, 6),
) -> AccuracyReport:
    """Evaluate FP32 and INT8 with ONNX Runtime on the COCO-layout ``val_data`` folder.

    Over ``budget`` AP: rank layers by their own error against FP32 (:mod:`.sensitivity`) on a
    few calibration images, then re-quantize with the top 1, 3, 6 of them kept in float (reusing
    the calibration ranges in ``calib_cache``) until the drop is within budget, and report the
    ``--keep-float`` patterns that did it. With ``max_ap_drop``, a larger drop raises
    :class:`AccuracyDropError` (after the report is complete).
    """
    from .data.coco import resolve_coco_dir

    fp32_p, int8_p = Path(fp32), Path(int8)
    ann, images = resolve_coco_dir(val_data, split)
    report = AccuracyReport(_ap(fp32_p, ann, images, progress, max_images),
                            _ap(int8_p, ann, images, progress, max_images), budget)
    if report.over_budget:
        from .sensitivity import layer_errors, sample_inputs

        prov = read_quant_provenance(int8_p) or {}
        meta = ModelMeta.from_props(_props(_load(fp32_p)))
        cs = calib if isinstance(calib, CalibSet) else (read_calib_set(calib) if calib is not None else None)
        if cs is not None and meta is not None:
            batches = sample_inputs(cs.files, meta, sensitivity_images)
            report.sensitive = layer_errors(fp32_p, int8_p, batches)
            base = list(prov.get("keep_float", []))
            with tempfile.TemporaryDirectory(prefix="detnet_trt_fix_") as tmp:
                cache = (calib_cache or Path(tmp) / "ranges.json") if ort_has_cache_api() else None
                for k in fix_steps:
                    # one pattern per weight: a shared head conv shows once per FPN level
                    pats = list(dict.fromkeys(le.keep_float_pattern() for le in report.sensitive[:k]))
                    if not pats or (report.fix_patterns and len(pats) == len(report.fix_patterns)):
                        break
                    trial = Path(tmp) / f"fix{k}.onnx"
                    quantize_onnx(fp32_p, cs, trial, method=prov.get("method", "entropy"), keep_float=base + pats,
                                  keep_head_float=prov.get("keep_head_float", True), force=True, progress=False,
                                  calib_cache=cache, percentile=prov.get("percentile") or DEFAULT_PERCENTILE)
                    drop = report.fp32["AP"] - _ap(trial, ann, images, progress, max_images)["AP"]
                    report.fix_tries.append({"keep_float": pats, "drop": drop})
                    if report.fix_drop is None or drop < report.fix_drop:
                        report.fix_patterns, report.fix_drop = pats, drop
                    if drop <= budget:
                        break
    if max_ap_drop is not None and report.drop > max_ap_drop:
        err = AccuracyDropError(
            f"INT8 loses {report.drop:.2f} AP (FP32 {report.fp32['AP']:.2f} -> INT8 {report.int8['AP']:.2f}), "
            f"more than --max-ap-drop {max_ap_drop:g}",
            "see the sensitive layers above; keep them in float with --keep-float",
        )
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report
