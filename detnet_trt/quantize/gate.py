"""The INT8 accuracy gate: COCO AP of the FP32 and the Q/DQ ONNX through ONNX Runtime, failing when
the drop exceeds the budget, with the most sensitive layers named (:func:`accuracy_check`).

:func:`quantize_gated` is quantize + gate as ``detnet-trt quantize --val-data --max-ap-drop`` runs
them: the Q/DQ model reaches its output path only once it has passed, so a rejected model is never
left where a later run would take it (``quantize_onnx`` reuses an output whose provenance matches,
``build --int8`` takes a Q/DQ ONNX as it is).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DetnetError
from ..core.fileio import check_not_input, check_writable
from ..core.onnx_meta import meta_of
from .calibrate import _load, ort_has_cache_api, quantize_onnx, read_quant_provenance
from .calibset import CalibSet, read_calib_set
from .options import AP_BUDGET as AP_BUDGET  # re-exported: the budget lived here
from .options import DEFAULT_PERCENTILE, AccuracyCheckOptions, QuantizeOptions


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
    from ..evaluation.coco_eval import EvalOptions, evaluate

    return evaluate(model, ann, images, EvalOptions(max_images=max_images, progress=progress)).metrics


def accuracy_check(
    fp32: str | os.PathLike[str],
    int8: str | os.PathLike[str],
    val_data: str | os.PathLike[str],
    options: AccuracyCheckOptions = AccuracyCheckOptions(),
    *,
    calib: str | os.PathLike[str] | CalibSet | None = None,
    calib_cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> AccuracyReport:
    """Evaluate FP32 and INT8 with ONNX Runtime on the COCO-layout ``val_data`` folder.

    Over ``options.budget`` AP: rank layers by their own error against FP32 (:mod:`.sensitivity`)
    on a few calibration images of ``calib``, then re-quantize with the top 1, 3, 6
    (``options.fix_steps``) of them kept in float (reusing the calibration ranges in
    ``calib_cache``) until the drop is within budget, and report the ``--keep-float`` patterns
    that did it. With ``options.max_ap_drop``, a larger drop raises :class:`AccuracyDropError`
    (after the report is complete).
    """
    from ..data.coco import resolve_coco_dir

    fp32_p, int8_p = Path(fp32), Path(int8)
    ann, images = resolve_coco_dir(val_data, options.split)

    def ap(model: Path) -> dict[str, float]:
        return _ap(model, ann, images, progress, options.max_images)

    report = AccuracyReport(ap(fp32_p), ap(int8_p), options.budget)
    if report.over_budget:
        cs = calib if isinstance(calib, CalibSet) else (read_calib_set(calib) if calib is not None else None)
        meta = meta_of(_load(fp32_p))
        if cs is not None and meta is not None:
            from .sensitivity import layer_errors, sample_inputs

            report.sensitive = layer_errors(fp32_p, int8_p, sample_inputs(cs.files, meta, options.sensitivity_images))
            _search_fix(report, fp32_p, int8_p, cs, ap, options.fix_steps, calib_cache)
    if options.max_ap_drop is not None and report.drop > options.max_ap_drop:
        err = AccuracyDropError(
            f"INT8 loses {report.drop:.2f} AP (FP32 {report.fp32['AP']:.2f} -> INT8 {report.int8['AP']:.2f}), "
            f"more than --max-ap-drop {options.max_ap_drop:g}",
            "see the sensitive layers above; keep them in float with --keep-float",
        )
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


def quantize_gated(
    fp32: str | os.PathLike[str],
    calib: str | os.PathLike[str] | CalibSet,
    output: str | os.PathLike[str],
    val_data: str | os.PathLike[str],
    options: QuantizeOptions = QuantizeOptions(),
    gate: AccuracyCheckOptions = AccuracyCheckOptions(),
    *,
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, AccuracyReport]:
    """:func:`~.calibrate.quantize_onnx` then :func:`accuracy_check` on ``val_data``: ``(output, report)``.

    With ``gate.max_ap_drop``, a new model (``output`` absent, or ``force``) is written in a
    temporary folder beside ``output`` and moved there only when it passes; when it fails,
    :class:`AccuracyDropError` (with ``.report``) is raised and ``output`` is as it was (absent,
    or the previous file). An existing ``output`` without ``force`` is reused or refused as
    ``quantize_onnx`` does, and left in place when it fails the gate.
    """
    from .calibrate import quantize_onnx

    out = Path(output)
    cs = calib if isinstance(calib, CalibSet) else read_calib_set(calib)
    report_only = dataclasses.replace(gate, max_ap_drop=None)
    if gate.max_ap_drop is None or (out.exists() and not force):
        made = quantize_onnx(fp32, cs, out, options, force=force, progress=progress)
        return made, _gate(accuracy_check(fp32, made, val_data, report_only, calib=cs,
                                          calib_cache=options.calib_cache, progress=progress), gate, out, False)
    check_not_input(out, [fp32, None if isinstance(calib, CalibSet) else calib])
    check_writable(out, force)  # before the work
    with tempfile.TemporaryDirectory(prefix=".detnet_trt_gate_", dir=out.parent) as tmp:
        trial = quantize_onnx(fp32, cs, Path(tmp) / out.name, options, force=True, progress=progress)
        report = _gate(accuracy_check(fp32, trial, val_data, report_only, calib=cs,
                                      calib_cache=options.calib_cache, progress=progress), gate, out, True)
        os.replace(trial, out)  # same folder: atomic; only a model that passed gets here
    return out, report


def _gate(report: AccuracyReport, gate: AccuracyCheckOptions, out: Path, new: bool) -> AccuracyReport:
    """``report``, or :class:`AccuracyDropError` when its drop is over ``gate.max_ap_drop``."""
    if gate.max_ap_drop is None or report.drop <= gate.max_ap_drop:
        return report
    where = f"{out} was not written" if new else f"{out} (made before, reused) is left as it was"
    err = AccuracyDropError(
        f"INT8 loses {report.drop:.2f} AP (FP32 {report.fp32['AP']:.2f} -> INT8 {report.int8['AP']:.2f}), "
        f"more than --max-ap-drop {gate.max_ap_drop:g}; {where}",
        "keep the layers named above in float with --keep-float",
    )
    err.report = report  # type: ignore[attr-defined]
    raise err


def _search_fix(
    report: AccuracyReport,
    fp32: Path,
    int8: Path,
    cs: CalibSet,
    ap: Callable[[Path], dict[str, float]],
    fix_steps: Sequence[int],
    calib_cache: str | os.PathLike[str] | None,
) -> None:
    """Re-quantize ``fp32`` as ``int8`` was, with the top ``k`` sensitive layers also kept float,
    for each ``k`` in ``fix_steps`` until the drop is within budget; the best try goes in ``report``."""
    prov = read_quant_provenance(int8) or {}
    base = list(prov.get("keep_float", []))
    with tempfile.TemporaryDirectory(prefix="detnet_trt_fix_") as tmp:
        cache = (calib_cache or Path(tmp) / "ranges.json") if ort_has_cache_api() else None
        for k in fix_steps:
            # one pattern per weight: a shared head conv shows once per FPN level
            pats = list(dict.fromkeys(le.keep_float_pattern() for le in report.sensitive[:k]))
            if not pats or (report.fix_patterns and len(pats) == len(report.fix_patterns)):
                break
            trial = Path(tmp) / f"fix{k}.onnx"
            options = QuantizeOptions(
                method=prov.get("method", "entropy"),
                keep_float=(*base, *pats),
                keep_head_float=prov.get("keep_head_float", True),
                calib_cache=Path(cache) if cache is not None else None,
                percentile=prov.get("percentile") or DEFAULT_PERCENTILE,
            )
            quantize_onnx(fp32, cs, trial, options, force=True, progress=False)
            drop = report.fp32["AP"] - ap(trial)["AP"]
            report.fix_tries.append({"keep_float": pats, "drop": drop})
            if report.fix_drop is None or drop < report.fix_drop:
                report.fix_patterns, report.fix_drop = pats, drop
            if drop <= report.budget:
                break
