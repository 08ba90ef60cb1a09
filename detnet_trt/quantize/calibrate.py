"""INT8 post-training quantization: FP32 ONNX + calibration set -> Q/DQ ONNX.

The quantizer is ONNX Runtime's static QDQ quantizer (``onnxruntime.quantization``), configured
for TensorRT's explicit quantization (NVIDIA's guidance for CNNs):

- ``QuantFormat.QDQ``; signed INT8 weights **per output channel** and INT8 activations, both
  **symmetric** (every zero point is 0, as TensorRT requires); conv biases stay float.
- Q/DQ on the inputs of the convolutions and, of each ``Add`` fed by a convolution (residual and
  FPN adds), on the input that is not the output of the convolution TensorRT fuses the add into
  (:func:`~.placement.residual_inputs`); a dedicated Q/DQ pair per consumer.
- Only the feature extractor is quantized: the head's final convolutions (those with no
  convolution downstream: class scores and box regression) and everything after them (sigmoid,
  box decode, top-k) stay float, as does the in-graph cast and normalisation. The two-stage
  detector's RPN score/box convolutions and box-head fully connected layers are quantized too
  (:func:`~.placement.keeps_head_float`); its RoI selection, RoIAlign, decode and NMS stay float. ``keep_float``
  patterns (globs over node names; ``re:`` prefix for a regular expression) keep more in float.

Calibration feeds the calibration set through :class:`~detnet_trt.runtime.letterbox.Letterboxer`, the
runtime's own letterbox, and ONNX Runtime, one batch at a time so that histogram methods
(``entropy``, ``percentile``) never hold the activations of the whole set in memory. The tensor ranges can be
kept in a calibration cache; the cache and the written model carry their provenance (FP32 ONNX
sha256, calibration set sha256 and image-data sha256, method, pre-processing), and a cache or an
existing output made from anything else is refused with a message, never reused silently.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import IncompatibleError, InputError, MissingDependencyError, ModelFileError
from ..core.fileio import atomic_write_bytes, atomic_write_text, check_not_input, check_writable, sha256_file
from ..core.meta import ModelMeta
from ..core.offline import import_ort
from ..core.onnx_meta import meta_of, seal, set_meta, verify_content
from .calibset import CalibSet, check_calib_images, read_calib_set
from .options import DEFAULT_PERCENTILE as DEFAULT_PERCENTILE  # re-exported: the names lived here
from .options import METHODS as METHODS
from .options import QuantizeOptions
from .placement import (
    _QDQ_OPS,
    OP_TYPES,
    PLACEMENT,
    _drop_unused_opsets,
    _name_nodes,
    _unquantize_float_inputs,
    keeps_head_float,
    plan_quantization,
    weight_labels,
)
from .reader import LetterboxDataReader, _hash_images, preprocessing_id

FORMAT = "detnet_trt.int8/1"
CACHE_FORMAT = "detnet_trt.calib_cache/1"

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
        model = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file
        raise ModelFileError(f"{path} is not a readable ONNX file ({err})", "re-export it with detnet-trt export") from None
    verify_content(model, path)  # a flipped bit in a weight parses: the recorded graph hash catches it
    return model


def is_qdq_onnx(path: str | os.PathLike[str]) -> bool:
    """True when the ONNX file at ``path`` contains QuantizeLinear/DequantizeLinear nodes."""
    model = _load(Path(path))
    return any(n.op_type in _QDQ_OPS for n in model.graph.node)


def read_quant_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``quantization`` provenance stored in a Q/DQ ONNX written by :func:`quantize_onnx`."""
    meta = meta_of(_load(Path(path)))
    if meta is None:
        return None
    prov = meta.extra.get("quantization")
    return prov if isinstance(prov, dict) else None


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


# --- which nodes to quantize ----------------------------------------------------------------------


# --- the pipeline -------------------------------------------------------------------------------------
def prepare_fp32(model_path: Path, out_path: Path) -> tuple[Any, dict[str, str]]:
    """ONNX Runtime's quantization pre-processing (shape inference + basic graph optimisation,
    which folds batch norms into convolutions), after naming unnamed nodes. Returns the model and
    the exported model's weight names of its nodes (folding renames weights; node names stay)."""
    quant_pre_process = import_ort("onnxruntime.quantization.shape_inference").quant_pre_process

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
    meta = meta_of(model)
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
    quantize_static = import_ort("onnxruntime.quantization").quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _ort_method(method: str) -> Any:
    methods = import_ort("onnxruntime.quantization").CalibrationMethod

    return {"entropy": methods.Entropy, "minmax": methods.MinMax, "percentile": methods.Percentile}[method]


def _calibrate(
    prepared: Path,
    reader: LetterboxDataReader,
    method: str,
    percentile: float,
    workdir: Path,
) -> dict[str, Any]:
    """Run the calibrator batch by batch; returns ONNX Runtime's TensorsData as a JSON-able dict."""
    create_calibrator = import_ort("onnxruntime.quantization").create_calibrator
    cache_encoder = import_ort("onnxruntime.quantization.calibrate").CalibrationCacheEncoder

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
    return json.loads(json.dumps(tensors.to_dict(), cls=cache_encoder))


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
    options: QuantizeOptions = QuantizeOptions(),
    *,
    calib_images: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Quantize the FP32 ONNX ``model`` to a Q/DQ INT8 ONNX at ``output`` (see the module docstring).

    ``calib``: a set file (``detnet-trt calib-set``) or a :class:`CalibSet`; ``calib_images``
    overrides the folder its paths are relative to. ``options`` (:class:`QuantizeOptions`): the
    method, what stays float, and ``calib_cache``, a JSON file of tensor ranges written after
    calibration and reused (only) when its provenance matches. An existing ``output`` is reused
    when its provenance matches these inputs, refused otherwise unless ``force``. The set's images
    are checked first (:func:`~.calibset.check_calib_images`): one changed since the set was made
    is refused as stale; unreadable ones are skipped and counted (warning), and fewer readable ones
    than the set's minimum (``calib-set``'s rule) or ``options.min_images`` is an error.
    """
    src = Path(model)
    meta = _fp32_meta(_load(src), src)
    cs = calib if isinstance(calib, CalibSet) else read_calib_set(calib, calib_images)
    out = check_not_input(output, [src, None if isinstance(calib, CalibSet) else calib])
    unreadable = check_calib_images(cs, options.min_images)  # stale images, too few readable: refused
    data_sha = _hash_images(cs.files, {f for f, _ in unreadable})
    provenance = _provenance(src, cs, meta, options, data_sha, len(unreadable))
    keep_head = keeps_head_float(meta, options.keep_head_float)  # per model kind (two-stage: INT8)
    if out.exists() and not force:
        return _reuse_existing(out, provenance, options, keep_head)
    check_writable(out, force)
    _warn_unreadable(unreadable)

    with tempfile.TemporaryDirectory(prefix="detnet_trt_quant_") as tmp:
        work = Path(tmp)
        prepared_path = work / "prepared.onnx"
        prepared, weights = prepare_fp32(src, prepared_path)
        exclude, plan = plan_quantization(prepared, list(options.keep_float), keep_head, weights)
        ranges = _calibration_ranges(prepared_path, cs, meta, options, _cache_provenance(provenance), progress)
        source, calib_options = _calibration_source(ranges, work, cs, meta, options, progress)
        extra_options = {**_quantizer_options(), **calib_options}
        qmodel = _run_quantizer(prepared_path, work / "quantized.onnx", exclude, plan["residual_fused_inputs"],
                                options.method, source, extra_options)

    provenance.update(
        keep_float=list(options.keep_float),
        keep_head_float=keep_head,
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
    return _write_quantized(out, qmodel, meta, provenance)


# --- the steps of quantize_onnx ---------------------------------------------------------------------
def _provenance(
    src: Path, cs: CalibSet, meta: ModelMeta, options: QuantizeOptions, data_sha: str, skipped: int
) -> dict[str, Any]:
    """What the Q/DQ model is made from (inputs and settings), recorded in it and in the cache."""
    onnxruntime = import_ort()

    return {
        "format": FORMAT,
        "fp32_file": src.name,
        "fp32_sha256": sha256_file(src),
        "calib_set_file": cs.path.name if cs.path else None,
        "calib_set_sha256": cs.sha256,
        "calib_data_sha256": data_sha,
        "calib_images": len(cs.files) - skipped,
        "calib_skipped": skipped,
        "method": options.method,
        "percentile": options.percentile if options.method == "percentile" else None,
        "preprocessing": preprocessing_id(meta),
        "op_types": list(OP_TYPES),
        "placement": PLACEMENT,
        "onnxruntime": onnxruntime.__version__,
    }


def _reuse_existing(out: Path, provenance: dict[str, Any], options: QuantizeOptions, keep_head: bool) -> Path:
    """``out`` when it was made from the same inputs and settings; else :class:`IncompatibleError`."""
    old = read_quant_provenance(out) if out.suffix == ".onnx" else None
    want = dict(provenance, keep_float=list(options.keep_float), keep_head_float=keep_head)
    keys = (*_CACHE_KEYS, "placement", "keep_float", "keep_head_float")
    if old is not None and not _describe_mismatch(want, old, keys):
        log.warning("%s is up to date (same FP32 model, calibration set, method and settings): reusing it", out)
        return out
    why = "; ".join(_describe_mismatch(want, old, keys)) if old else "it is not a detnet_trt Q/DQ ONNX"
    raise IncompatibleError(f"{out} exists and was not made from these inputs ({why})", "pass --force to overwrite it")


def _warn_unreadable(unreadable: list[tuple[Path, str]]) -> None:
    """Warn about the skipped calibration images (their count is checked by check_calib_images)."""
    if unreadable:
        names = ", ".join(f"{f.name} ({why})" for f, why in unreadable[:10])
        more = f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
        log.warning("calibration: skipped %d unreadable image(s): %s%s", len(unreadable), names, more)


def _calibration_ranges(
    prepared_path: Path,
    cs: CalibSet,
    meta: ModelMeta,
    options: QuantizeOptions,
    cache_prov: dict[str, Any],
    progress: bool,
) -> dict[str, Any] | None:
    """The tensor ranges: from ``options.calib_cache`` when it matches, else calibrated here (and
    written there). None when this onnxruntime calibrates inside ``quantize_static`` itself."""
    cache_path = options.calib_cache
    if not ort_has_cache_api():
        if cache_path is not None:
            onnxruntime = import_ort()

            raise MissingDependencyError(
                f"--calib-cache needs an onnxruntime whose quantize_static takes calibration_cache_path "
                f"(this is {onnxruntime.__version__})",
                "upgrade onnxruntime, or quantize without --calib-cache",
            )
        return None
    if cache_path is not None and cache_path.exists():
        ranges = _read_cache(cache_path, cache_prov)
        log.info("calibration: reusing tensor ranges from %s", cache_path)
        return ranges
    from tqdm import tqdm

    method = options.method
    with tqdm(total=len(cs.files), desc=f"calibrating ({method})", unit="img", disable=not progress) as bar:
        reader = LetterboxDataReader(cs.files, meta, batch=options.batch, progress=bar)
        ranges = _calibrate(prepared_path, reader, method, options.percentile, prepared_path.parent)
    if cache_path is not None:
        payload = {"format": CACHE_FORMAT, "provenance": cache_prov, "ranges": ranges}
        atomic_write_text(cache_path, json.dumps(payload), force=True)
    return ranges


def _calibration_source(
    ranges: dict[str, Any] | None,
    work: Path,
    cs: CalibSet,
    meta: ModelMeta,
    options: QuantizeOptions,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``quantize_static``'s calibration arguments and the extra options they need: the ranges
    as ONNX Runtime's cache file, or (an older onnxruntime, which calibrates itself) a reader
    over the same letterboxed images."""
    if ranges is not None:
        ort_cache = work / "ranges.json"
        ort_cache.write_text(json.dumps(ranges), encoding="utf-8")
        return {"calibration_data_reader": None, "calibration_cache_path": str(ort_cache)}, {}
    from tqdm import tqdm

    bar = tqdm(total=len(cs.files), desc=f"calibrating ({options.method})", unit="img", disable=not progress)
    source = {"calibration_data_reader": LetterboxDataReader(cs.files, meta, batch=options.batch, progress=bar)}
    extra: dict[str, Any] = {"CalibTensorRangeSymmetric": True}
    if options.method == "percentile":
        extra["CalibPercentile"] = options.percentile
    return source, extra


def _quantizer_options() -> dict[str, Any]:
    """``quantize_static``'s extra options for TensorRT's explicit quantization."""
    return {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,  # TensorRT takes float biases
        "DedicatedQDQPair": True,  # one Q/DQ pair per consumer, as TensorRT's fusions expect
        "OpTypesToExcludeOutputQuantization": list(OP_TYPES),  # Q/DQ on inputs only
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1, "Gemm": 0},
    }


def _run_quantizer(
    prepared_path: Path,
    q_path: Path,
    exclude: list[str],
    fused_inputs: dict[str, str],
    method: str,
    source: dict[str, Any],
    extra_options: dict[str, Any],
) -> Any:
    """ONNX Runtime's static QDQ quantizer; returns the Q/DQ model with the float nodes' inputs and
    the residual Adds' ``fused_inputs`` un-quantized and unused opsets dropped."""
    q = import_ort("onnxruntime.quantization")

    with contextlib.redirect_stdout(io.StringIO()):
        q.quantize_static(
            str(prepared_path),
            str(q_path),
            **source,
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(OP_TYPES),
            per_channel=True,
            reduce_range=False,
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=_ort_method(method),
            extra_options=extra_options,
        )
    qmodel = _onnx().load(str(q_path))
    _unquantize_float_inputs(qmodel, set(exclude), fused_inputs)
    _drop_unused_opsets(qmodel)
    return qmodel


def _write_quantized(out: Path, qmodel: Any, meta: ModelMeta, provenance: dict[str, Any]) -> Path:
    """Store the INT8 metadata and provenance in ``qmodel``, check it, write it atomically."""
    extra = dict(meta.extra)
    extra["quantization"] = provenance
    new_meta = meta.with_updates(precision="int8", extra=extra)
    set_meta(qmodel, new_meta)
    qmodel.producer_name = "detnet_trt.quantize (onnxruntime.quantization)"
    from ..export.check import check_graph

    problems = check_graph(qmodel, new_meta)
    if problems:
        log.warning("%s may not build with TensorRT 8.6: %s", out, "; ".join(problems[:5]))
    seal(qmodel)
    atomic_write_bytes(out, qmodel.SerializeToString(), force=True)
    return out
