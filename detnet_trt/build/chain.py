"""Build a TensorRT engine from a checkpoint or an ONNX file: a chain of small, checked steps.

    (export)      checkpoint -> FP32 ONNX (host NMS)                     no TensorRT needed
    (quantize)    --int8: FP32 ONNX + calibration set -> Q/DQ ONNX        no TensorRT needed
    (fp16 types)  --fp16 on TensorRT 11: FP32 ONNX -> FP16-typed ONNX
    (nms)         --nms efficient: append EfficientNMS_TRT (graph surgery)
    parse         TensorRT's ONNX parser; every parser error is printed
    configure     workspace limit, precision, optimisation profile for the dynamic batch,
                  DLA core with GPU fallback, timing cache (reused across builds)
    build         serialized network, with progress
    save          engine written atomically + sidecar JSON (see :mod:`.sidecar`)

Without TensorRT the ONNX steps still run and their files are kept (a Q/DQ ONNX built here can
be compiled on the Jetson); the chain then stops with one line saying TensorRT is missing.
``tensorrt`` is imported lazily, only inside the functions that need it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import InputError, ModelFileError
from ..core.fileio import check_writable
from ..core.sidecar import sidecar_path
from ..trt import compat
from .builder import _build_with_tensorrt, _installed_api, _Steps
from .options import CHECKPOINT_SUFFIXES, BuildOptions


# --- the chain -----------------------------------------------------------------------------
def build_engine(onnx_or_ckpt: str | os.PathLike[str], output: str | os.PathLike[str], options: BuildOptions) -> Path:
    """Build ``output`` (a TensorRT engine) and its sidecar from a checkpoint or ONNX file.

    ``options`` (:class:`BuildOptions`, validated when made): ``precision`` is ``fp32``, ``fp16``
    or ``int8``; INT8 needs ``calib`` (a calibration set file) unless the ONNX is already
    quantized (Q/DQ). Raises :class:`~detnet_trt.trt.compat.TensorRTMissingError` after the ONNX
    steps when TensorRT is not installed (the ONNX files are kept).
    """
    src = Path(onnx_or_ckpt)
    if not src.is_file():
        raise ModelFileError(f"{src}: no such file", "pass a checkpoint (.pt) or an ONNX file")
    out = check_writable(output, options.force, inputs=(src,))
    if out.suffix.lower() == ".onnx":
        raise InputError(f"-o {out}: the engine file must not end in .onnx", "use .engine or .plan")
    check_writable(sidecar_path(out), options.force, inputs=(src,))
    log = _Steps(options.progress)

    api = _installed_api()
    onnx_path, calib_sha, reference = prepare_onnx(src, out, options, api, log)
    if api is None:
        kept = f"kept {onnx_path}" + (" (Q/DQ INT8)" if options.precision == "int8" else "")
        raise compat.TensorRTMissingError(
            f"TensorRT is not installed; {kept}: build the engine on the target with "
            f"`{shlex.join(target_command(onnx_path, out, options))}`",
            compat.INSTALL_HINT,
        )
    engine = _build_with_tensorrt(api, src, onnx_path, out, options, calib_sha, log)
    if options.verify is not None:
        _verify(engine, reference, options, log)
    return engine


def _verify(engine: Path, reference: Path, opts: BuildOptions, log: _Steps) -> None:
    """``--verify``: the engine against its ONNX file on the images, recorded in the sidecar;
    over the AP budget a warning, or with ``--max-ap-drop`` an :class:`~.verify.EngineAccuracyError`
    (exit 3; the engine and its record are kept)."""
    from ..core.config import PostprocessConfig
    from ..core.sidecar import read_sidecar, write_sidecar
    from .verify import EngineAccuracyError, budget_message, verify_build

    if opts.verify is None:
        return
    log.step(f"verify {engine.name} against {reference.name} on {opts.verify.images}")
    # the engine's own NMS settings on both sides (an --nms efficient engine did its NMS in the plugin)
    post = PostprocessConfig(iou=opts.post.iou, max_det=opts.post.max_det) if opts.nms == "efficient" \
        else PostprocessConfig()
    record = verify_build(engine, reference, opts.verify, post)
    info = read_sidecar(engine)
    info.build["verify"] = record
    write_sidecar(engine, info, force=True)
    ap = f", AP {record['engine_ap']:.2f} vs {record['reference_ap']:.2f}" if "engine_ap" in record else ""
    log.step(f"verify: {record['matched']} of {max(record['engine_detections'], record['reference_detections'])} "
             f"detections matched on {record['images']} images{ap}")
    message = budget_message(record)
    if message is None:
        return
    if opts.verify.max_ap_drop is not None:
        raise EngineAccuracyError(f"{engine.name}: {message}", "the engine and its sidecar are kept; see build.verify")
    log.note(f"warning: {message}")


def target_command(onnx_path: Path, out: Path, opts: BuildOptions) -> list[str]:
    """The ``detnet-trt build`` that finishes this build on the target from the kept ``onnx_path``:
    every engine option the user gave (what the ONNX steps already did, export, quantization and
    the NMS surgery, is in the file and is not repeated)."""
    d = BuildOptions()
    cmd = ["detnet-trt", "build", str(onnx_path), f"--{opts.precision}"]
    if opts.precision == "int8" and opts.int8_fallback != d.int8_fallback:
        cmd += ["--int8-fallback", opts.int8_fallback]
    lo, opt, hi = opts.batch
    if opts.batch != d.batch:
        cmd += ["--batch", str(lo) if lo == opt == hi else f"{lo},{opt},{hi}"]
    if opts.workspace_mib != d.workspace_mib:
        cmd += ["--workspace", str(opts.workspace_mib)]
    if opts.dla_core is not None:
        cmd += ["--dla", str(opts.dla_core)] + (["--dla-gpu-fallback"] if opts.dla_gpu_fallback else [])
    if opts.no_timing_cache:
        cmd.append("--no-timing-cache")
    elif opts.timing_cache is not None:
        cmd += ["--timing-cache", str(opts.timing_cache)]
    for lib in opts.plugins:
        cmd += ["--plugin", str(lib)]
    if opts.verify is not None:
        v = opts.verify
        cmd += ["--verify", str(v.images)]
        cmd += ["--verify-annotations", str(v.annotations)] if v.annotations is not None else []
        cmd += ["--max-ap-drop", str(v.max_ap_drop)] if v.max_ap_drop is not None else []
        cmd += ["--verify-max-images", str(v.max_images)] if v.max_images != 200 else []
    if opts.verbose:
        cmd.append("--verbose")
    return [*cmd, "-o", out.name]


def prepare_onnx(
    src: Path, out: Path, opts: BuildOptions, api: compat.TrtApi | None, log: _Steps
) -> tuple[Path, str, Path]:
    """The ONNX steps (export, quantize, FP16 types, NMS plugin); returns (ONNX to parse, calib
    sha256, the ONNX before the NMS plugin: what ``--verify`` compares the engine with)."""
    from ..quantize.calibrate import is_qdq_onnx, read_quant_provenance

    base = out.with_suffix("")
    is_ckpt = src.suffix.lower() in CHECKPOINT_SUFFIXES
    if opts.nms == "efficient":
        _check_host_nms(src, is_ckpt)
    qdq = (not is_ckpt) and is_qdq_onnx(src)
    if opts.precision == "int8" and not qdq and opts.calib is None:
        kind = "a checkpoint" if is_ckpt else "an FP32 ONNX"
        raise InputError(
            f"--int8 from {kind} ({src.name}) needs --calib SET: INT8 scales come from calibration images",
            "make a set with `detnet-trt calib-set`, or pass an already quantized (Q/DQ) ONNX",
        )
    if qdq and opts.precision != "int8":
        raise InputError(f"{src.name} is a quantized (Q/DQ) ONNX", "build it with --int8")
    if qdq and opts.calib is not None:
        from ..quantize.calibrate import check_quantized

        check_quantized(src, calib=opts.calib)  # refuses a Q/DQ ONNX calibrated on another set

    current = src
    if is_ckpt:
        from ..export.onnx import export_onnx

        log.step(f"export {src.name} -> ONNX")
        current = export_onnx(src, base.with_name(base.name + ".onnx"), layout=opts.layout, topk=opts.topk,
                              nms="host", force=opts.force)
    calib_sha = ""
    if opts.precision == "int8" and not qdq and opts.calib is not None:
        from ..quantize.calibrate import quantize_onnx
        from ..quantize.calibset import read_calib_set
        from ..quantize.options import QuantizeOptions

        cs = read_calib_set(opts.calib)
        calib_sha = cs.sha256
        log.step(f"quantize {current.name} with {len(cs.files)} calibration images ({opts.calib_method})")
        current = quantize_onnx(current, cs, _derived(base, "int8"), QuantizeOptions(method=opts.calib_method),
                                force=opts.force, progress=opts.progress)
    elif qdq:
        prov = read_quant_provenance(src) or {}
        calib_sha = str(prov.get("calib_set_sha256", ""))
    if api is not None and api.needs_typed_fp16_onnx(opts.precision, opts.int8_fallback):
        from .fp16 import convert_to_fp16, is_fp16_onnx

        if not is_fp16_onnx(current):
            around = " around the INT8 layers" if opts.precision == "int8" else ""
            log.step(f"FP16-typed ONNX{around} for TensorRT {api.version} (strongly typed)")
            tag = "int8.fp16" if opts.precision == "int8" else "fp16"
            current = convert_to_fp16(current, _derived(base, tag), force=opts.force)
    reference = Path(current)  # what --verify runs in ONNX Runtime (the plugin's graph does not run there)
    if opts.nms == "efficient":
        from ..export.efficient_nms import add_efficient_nms

        log.step(f"add EfficientNMS_TRT (max_det={opts.post.max_det}, iou={opts.post.iou})")
        current = add_efficient_nms(current, _derived(base, current_tag(current) + "nms"), post=opts.post,
                                    force=opts.force)
    return Path(current), calib_sha, reference


def _check_host_nms(src: Path, is_ckpt: bool) -> None:
    """``--nms efficient`` appends EfficientNMS_TRT to a host-NMS graph: refuse, before any export
    or calibration, a model whose NMS is in its graph already (the two-stage detector, an ONNX
    exported with in-graph NMS or already carrying the plugin)."""
    if is_ckpt:
        from ..models.checkpoint import read_checkpoint
        from ..models.detnet_fpn import DetNetFPNConfig
        from ..models.registry import MODELS

        name = str(read_checkpoint(src, verify=False)["model"])
        if isinstance(MODELS.get(name), type) and issubclass(MODELS[name], DetNetFPNConfig):
            raise InputError(f"--nms efficient: {src.name} is the two-stage detector {name}, whose NMS is in its graph "
                             "already", "build it without --nms efficient (its own NMS runs in the engine)")
        return
    from ..core.onnx_meta import read_onnx_meta

    meta = read_onnx_meta(src)
    if meta.extra.get("detector") == "two_stage":
        raise InputError(f"--nms efficient: {src.name} is the two-stage detector {meta.model}, whose NMS is in its "
                         "graph already", "build it without --nms efficient (its own NMS runs in the engine)")
    if meta.nms != "host":
        raise InputError(f"--nms efficient: {src.name} has its NMS in the graph already (nms={meta.nms!r})",
                         "build it without --nms efficient, or export it with --nms host")


def current_tag(path: Path) -> str:
    """``model.int8.onnx`` -> ``"int8."``, ``model.int8.fp16.onnx`` -> ``"int8.fp16."`` (the
    precision tags of a derived file), else ``""``."""
    parts = path.name.split(".")[1:-1]
    tags = [p for p in parts if p in ("int8", "fp16")]
    return "".join(f"{t}." for t in tags)


def _derived(base: Path, tag: str) -> Path:
    return base.with_name(f"{base.name}.{tag}.onnx")


__all__: Sequence[str] = ["build_engine", "prepare_onnx"]
