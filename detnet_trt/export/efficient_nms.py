"""TensorRT plugin integration: in-engine NMS (``EfficientNMS_TRT``) and custom plugin libraries.

In-engine NMS (``detnet-trt build --nms efficient``): the exported graph ends with per-image top-K
candidates (``boxes`` N x K x 4 xyxy, ``scores`` N x K, ``class_ids`` N x K). :func:`add_efficient_nms`
appends, by graph surgery with onnx-graphsurgeon, TensorRT's bundled ``EfficientNMS_TRT`` plugin
(class-aware NMS): the candidates' scores are spread to an N x K x C score tensor (score at the
candidate's class, 0 elsewhere: the plugin reports a detection's class as its score column, so
class-aware NMS with class ids needs one column per class), the plugin keeps ``max_det`` boxes per
image, and its outputs are
renamed to the in-graph NMS contract of :mod:`detnet_trt.core.meta` (``det_boxes``, ``det_scores``,
``det_class_ids``, ``num_dets`` of shape N). TensorRT's ONNX parser finds the plugin by op name
once the bundled plugins are registered (``init_libnvinfer_plugins``, done by the engine builder and
runtime). ONNX Runtime cannot run the plugin; the graph before it still runs there.

The score threshold keeps the plugin on its fast path (``efficientNMSInference.cu``,
``EfficientNMSFilterLauncher``): from a threshold of :data:`FAST_PATH_MIN_SCORE` (0.007, the
plugin's ``kernelSelectThreshold``) up, the ``EfficientNMSFilter`` kernel keeps only the scores at
or above it (the one-hot tensor's zeros never pass, so at most K per image) and only those are
sorted; below it, ``EfficientNMSDenseIndex`` copies all N x K x C scores and the radix sort runs
over every one of them (K x C = 80,000 per image for K = 1000 and 80 classes, nearly all zeros).
So ``--nms efficient`` defaults to :data:`EFFICIENT_NMS` (score 0.01, NVIDIA's README's "lower
than approximately 0.01 may cause substantially higher latency"); a lower ``--nms-conf`` still
builds, with a warning that names the slow path. Raw logits with ``score_activation`` do not apply:
the head's score is sqrt(sigmoid(cls) * sigmoid(ctr)), already a probability.

Custom plugin libraries (``--plugin libmyplugins.so``):
:func:`detnet_trt.trt.plugins.load_plugin_libraries` loads each shared library into the process
with ``RTLD_GLOBAL`` before parsing or deserializing; a library registers its plugin creators when
loaded (``REGISTER_TENSORRT_PLUGIN``). See ``plugins/README.md``. This module itself never imports
TensorRT.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import EFFICIENT_NMS, PostprocessConfig
from ..core.errors import MissingDependencyError, ModelFileError
from ..core.fileio import atomic_write_bytes, check_writable
from ..core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS, ModelMeta
from ..core.onnx_meta import meta_of, seal, set_meta
from ..trt.plugins import PluginError

EFFICIENT_NMS_OP = "EfficientNMS_TRT"
# The plugin's own output names, in its output order.
_PLUGIN_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
#: EfficientNMS_TRT's ``kernelSelectThreshold``: below this score threshold it sorts every score.
FAST_PATH_MIN_SCORE = 0.007

log = logging.getLogger(__name__)


# --- EfficientNMS_TRT by graph surgery -----------------------------------------------------
def add_efficient_nms(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    post: PostprocessConfig = EFFICIENT_NMS,
    force: bool = False,
) -> Path:
    """Append ``EfficientNMS_TRT`` to a host-NMS ONNX ``src``; write the result to ``dst``.

    ``post.conf`` is the plugin's score threshold (at least :data:`FAST_PATH_MIN_SCORE` keeps the
    plugin on its fast path, see the module docstring; lower ones warn; the post-processing applies
    the user's threshold afterwards), ``post.iou`` its IoU threshold, ``post.max_det`` the padded
    detections per image.
    """
    onnx, gs = _import_graphsurgeon()
    if post.max_det < 1 or not 0.0 <= post.conf <= 1.0 or not 0.0 < post.iou <= 1.0:
        raise PluginError(
            f"EfficientNMS settings out of range: max_det={post.max_det}, conf={post.conf}, iou={post.iou}"
        )
    out = check_writable(dst, force, inputs=(src,))
    fast = post.conf >= FAST_PATH_MIN_SCORE
    if not fast:
        log.warning("EfficientNMS score threshold %g is below %g: the plugin takes its slow path (a dense copy and "
                    "sort of all N x K x C scores); --nms-conf %g or more keeps it fast", post.conf,
                    FAST_PATH_MIN_SCORE, EFFICIENT_NMS.conf)
    model = onnx.load(str(src))
    meta = _host_nms_meta(model, src)
    graph = gs.import_onnx(model)
    outs = {t.name: t for t in graph.outputs}
    missing = [n for n in HOST_NMS_OUTPUTS if n not in outs]
    if missing:
        raise PluginError(f"{src}: outputs {missing} not found (has {sorted(outs)})")
    boxes, scores, class_ids = (outs[n] for n in HOST_NMS_OUTPUTS)
    class_scores = _class_scores(graph, scores, class_ids, meta.num_classes)
    _append_plugin(graph, boxes, class_scores, post)
    graph.cleanup().toposort()
    if tuple(t.name for t in graph.outputs) != GRAPH_NMS_OUTPUTS:
        raise PluginError("graph surgery produced unexpected outputs")  # pragma: no cover

    new_model = gs.export_onnx(graph)
    new_model.ir_version = model.ir_version
    new_meta = meta.with_updates(nms="efficient", max_det=int(post.max_det))
    new_meta.extra = {
        **meta.extra,
        "efficient_nms": {"conf": float(post.conf), "iou": float(post.iou), "max_det": int(post.max_det),
                          "fast_path": fast, "score_layout": "NxKxC one-hot"},
    }
    del new_model.metadata_props[:]
    new_model.metadata_props.extend(model.metadata_props)
    set_meta(new_model, new_meta)
    seal(new_model)  # the new graph's own content hash, verified by every reader
    atomic_write_bytes(out, new_model.SerializeToString(), force=True)
    return out


def _import_graphsurgeon() -> tuple[Any, Any]:
    """``(onnx, onnx_graphsurgeon)``, or a :class:`MissingDependencyError` naming the extra."""
    try:
        import onnx
        import onnx_graphsurgeon as gs
    except ImportError:
        raise MissingDependencyError(
            "onnx-graphsurgeon is not installed, --nms efficient needs it",
            "pip install 'detnet-trt[plugins]'",
        ) from None
    return onnx, gs


def _host_nms_meta(model: Any, src: str | os.PathLike[str]) -> ModelMeta:
    """The metadata of a detnet_trt host-NMS export; :class:`ModelFileError` / :class:`PluginError` otherwise."""
    meta = meta_of(model)
    if meta is None:
        raise ModelFileError(f"{src}: not a detnet_trt ONNX (no metadata)", "export it with `detnet-trt export`")
    if meta.nms != "host":
        raise PluginError(
            f"{src}: has nms={meta.nms!r}; EfficientNMS is added to a host-NMS export",
            "export with --nms host",
        )
    return meta


def _class_scores(graph: Any, scores: Any, class_ids: Any, num_classes: int) -> Any:
    """Scores N x K -> N x K x C: score at the candidate's class, 0 elsewhere (class-aware NMS)."""
    import onnx
    import onnx_graphsurgeon as gs

    classes = gs.Constant("nms_class_range", np.arange(num_classes, dtype=np.int32).reshape(1, 1, -1))
    axis = gs.Constant("nms_axis_last", np.array([-1], dtype=np.int64))
    cls_i32 = _node(graph, "Cast", [class_ids], np.int32, attrs={"to": onnx.TensorProto.INT32})
    cls_3d = _node(graph, "Unsqueeze", [cls_i32, axis], np.int32)
    onehot = _node(graph, "Equal", [cls_3d, classes], np.bool_)
    onehot_f = _node(graph, "Cast", [onehot], np.float32, attrs={"to": onnx.TensorProto.FLOAT})
    scores_3d = _node(graph, "Unsqueeze", [scores, axis], np.float32)
    return _node(graph, "Mul", [scores_3d, onehot_f], np.float32, name="nms_class_scores")


def _append_plugin(graph: Any, boxes: Any, class_scores: Any, post: PostprocessConfig) -> None:
    """The plugin node and a Squeeze of its count; the graph's outputs become the in-graph NMS contract."""
    import onnx_graphsurgeon as gs

    max_det = post.max_det
    n = boxes.shape[0] if boxes.shape else "N"
    det_outputs = [
        gs.Variable("nms_num_detections", dtype=np.int32, shape=[n, 1]),
        gs.Variable("det_boxes", dtype=np.float32, shape=[n, max_det, 4]),
        gs.Variable("det_scores", dtype=np.float32, shape=[n, max_det]),
        gs.Variable("det_class_ids", dtype=np.int32, shape=[n, max_det]),
    ]
    graph.layer(
        op=EFFICIENT_NMS_OP,
        name="efficient_nms",
        inputs=[boxes, class_scores],
        outputs=det_outputs,
        attrs={
            "plugin_version": "1",
            "background_class": -1,  # every class is a real class
            "max_output_boxes": int(max_det),
            "score_threshold": float(post.conf),
            "iou_threshold": float(post.iou),
            "score_activation": 0,  # scores are already probabilities
            "class_agnostic": 0,
            "box_coding": 0,  # corners: x1, y1, x2, y2
        },
    )
    num_dets = gs.Variable("num_dets", dtype=np.int32, shape=[n])
    squeeze_axis = gs.Constant("nms_axis_1", np.array([1], dtype=np.int64))
    graph.layer(op="Squeeze", name="num_dets_squeeze", inputs=[det_outputs[0], squeeze_axis], outputs=[num_dets])
    graph.outputs = [det_outputs[1], det_outputs[2], det_outputs[3], num_dets]


def _node(graph: Any, op: str, inputs: list[Any], dtype: type, attrs: dict[str, Any] | None = None,
          name: str | None = None) -> Any:
    """Add one node with one new output variable (named after the node) and return that variable."""
    import onnx_graphsurgeon as gs

    node_name = name or f"nms_{op.lower()}_{len(graph.nodes)}"
    out = gs.Variable(node_name + "_out", dtype=dtype)
    graph.layer(op=op, name=node_name, inputs=inputs, outputs=[out], attrs=attrs or {})
    return out
