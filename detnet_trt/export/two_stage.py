"""The two-stage DetNet-59 FPN (:mod:`detnet_trt.models.detnet_fpn`) as one ONNX graph.

The graph takes the uint8 ``images`` (N dynamic, fixed H x W) and ends in final detections, the
in-graph-NMS contract (``det_boxes``, ``det_scores``, ``det_class_ids``, ``num_dets``). It is the
model's own ``forward``, exported by the TorchScript exporter: the three steps whose PyTorch code
is not a graph (two NMS, one RoIAlign) are ``torch.autograd.Function`` s whose ``symbolic`` writes
the standard op (``NonMaxSuppression`` + the package's scatter / TopK padding, ``RoiAlign``), so
the exported graph computes what the tests run. torch.export (the default exporter of the dense
detector) cannot export those Functions, so this graph is always exported with the TorchScript
exporter.

Ops that matter for TensorRT (all in TensorRT 8.6's ONNX parser table):

- ``RoiAlign`` (opset 16 form): ``mode="avg"``, ``coordinate_transformation_mode=
  "output_half_pixel"``, ``sampling_ratio=1``, ``spatial_scale=1``, output ``(P + 1) x (P + 1)``
  on a mosaic of the four pooled levels with extrapolated borders, then a 0/1 mask and a 2 x 2
  ``AveragePool``: equal to DetNet_pytorch's kernel (:mod:`detnet_trt.models.two_stage.roi_align`).
  TensorRT's parser turns RoiAlign into the ``ROIAlign_TRT`` plugin (version 1) of
  ``libnvinfer_plugin`` in 8.6, 10.x and 11.x, which must be registered before parsing.
- ``NonMaxSuppression`` twice (RPN: IoU 0.7, 300 kept; detections: IoU 0.3, score > 0, 100 kept)
  on boxes ``(x1, y1, x2 + 1, y2 + 1)``, which makes the standard IoU their ``+1`` IoU. TensorRT
  runs it as ``INMSLayer``, which considers only the best ``topk_box_limit`` boxes of each image
  (a TensorRT default of a few thousand); ONNX Runtime considers all.
- ``TopK``: the RPN's 6000 best anchors are taken as TopK of 3840 then of the next 2160 (the
  first round masked to -inf by ``ScatterElements``), since TensorRT's TopK takes K <= 3840.
- ``Resize`` (linear, ``align_corners``: PyTorch 0.3's bilinear upsampling), ``Softmax``,
  ``Gather``, ``GatherND``, ``ScatterND``, ``CumSum``.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx

from ..core.meta import GRAPH_NMS_OUTPUTS, INPUT_NAME

EXPORTER = "torchscript"


def is_two_stage(model: Any) -> bool:
    """True for the two-stage detector (its metadata says so)."""
    return bool(model.meta().extra.get("detector") == "two_stage")


def two_stage_graph(model: Any, dummy: Any, opset: int) -> onnx.ModelProto:
    """``model.forward`` as ONNX (TorchScript exporter), batch dynamic."""
    import torch

    from .check import ExportCheckError

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values: the shapes are fixed
        torch.onnx.export(
            model,
            (dummy,),
            buf,  # type: ignore[arg-type]  # the legacy exporter writes to file-like objects
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=list(GRAPH_NMS_OUTPUTS),
            dynamic_axes={n: {0: "N"} for n in (INPUT_NAME, *GRAPH_NMS_OUTPUTS)},
        )
    proto = onnx.load_from_string(buf.getvalue())
    opsets = {o.domain: o.version for o in proto.opset_import}
    if opsets.get("", opset) != opset:
        raise ExportCheckError(f"the exporter wrote opset {opsets['']} instead of {opset}")
    return proto


def compare_detections(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], input_size: tuple[int, int], tol: float = 1e-4
) -> list[str]:
    """Differences between two in-graph-NMS outputs; [] if none. Per image: the same count, scores
    within ``tol``; class ids and boxes (within ``tol`` x the input size) where the score's rank is
    not tied within ``tol``."""
    problems: list[str] = []
    for name in GRAPH_NMS_OUTPUTS:
        if got[name].shape != want[name].shape:
            problems.append(f"{name}: shape {got[name].shape} != {want[name].shape}")
    if problems:
        return problems
    b, s, c, n = GRAPH_NMS_OUTPUTS
    for i in range(want[n].shape[0]):
        k = int(want[n][i])
        if int(got[n][i]) != k:
            problems.append(f"image {i}: {int(got[n][i])} detections, expected {k}")
            continue
        sw, sg = want[s][i, :k], got[s][i, :k]
        if k and float(np.abs(sw - sg).max()) > tol:
            problems.append(f"image {i}: scores differ by up to {float(np.abs(sw - sg).max()):.3g}")
        gap = np.abs(sw[:, None] - sw[None, :]) + np.eye(k) * 1.0
        untied = (gap > tol).all(axis=1) if k else np.zeros(0, bool)
        if not np.array_equal(got[c][i, :k][untied], want[c][i, :k][untied]):
            problems.append(f"image {i}: class ids differ at untied ranks")
        d = np.abs(got[b][i, :k][untied] - want[b][i, :k][untied])
        if d.size and float(d.max()) > tol * max(input_size):
            problems.append(f"image {i}: boxes differ by up to {float(d.max()):.3g} px at untied ranks")
    return problems
