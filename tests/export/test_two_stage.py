"""Export of the two-stage DetNet-59 FPN: one ONNX graph ending in detections, run by ONNX Runtime.

The PyTorch-side RoiAlign and NMS (autograd Functions exported as ``RoiAlign`` and
``NonMaxSuppression``) are checked against ONNX Runtime's own ops on the cases that matter
(borders, ties at the IoU and score thresholds), and the exported detector against PyTorch.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from fpn_checkpoint import NUM_CLASSES, POST, SIZE, their_checkpoint
from onnx import TensorProto, helper

from detnet_trt.core.offline import import_ort
from detnet_trt.core.onnx_meta import read_onnx_meta
from detnet_trt.export.check import check_graph
from detnet_trt.export.onnx import export_onnx
from detnet_trt.export.two_stage import compare_detections
from detnet_trt.models import load_detnet_pytorch_fpn
from detnet_trt.models.checkpoint import save_checkpoint
from detnet_trt.models.two_stage.nms import nms_kept_scores
from detnet_trt.models.two_stage.roi_align import roi_align_onnx

ort = import_ort()


def _session(nodes, inputs, outputs):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    return ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def test_roi_align_matches_onnx_runtime() -> None:
    rng = np.random.default_rng(0)
    feat = rng.standard_normal((2, 3, 9, 13)).astype(np.float32)
    xy = rng.uniform(-2, 14, (40, 2)).astype(np.float32)
    wh = rng.uniform(0, 9, (40, 2)).astype(np.float32)
    rois = np.concatenate([xy, xy + wh], 1)
    rois[:4] = [[0, 0, 12, 8], [11.5, 7.5, 14.5, 9.5], [-1.5, -1.5, 0.2, 0.3], [3, 3, 3, 3]]  # borders, beyond, empty
    batch = rng.integers(0, 2, 40).astype(np.int64)
    node = helper.make_node("RoiAlign", ["x", "r", "b"], ["y"], mode="avg", output_height=5, output_width=4,
                            sampling_ratio=1, spatial_scale=1.0, coordinate_transformation_mode="output_half_pixel")
    sess = _session([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 13]),
                             helper.make_tensor_value_info("r", TensorProto.FLOAT, [40, 4]),
                             helper.make_tensor_value_info("b", TensorProto.INT64, [40])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    want = sess.run(None, {"x": feat, "r": rois, "b": batch})[0]
    got = roi_align_onnx(torch.from_numpy(feat), torch.from_numpy(rois), torch.from_numpy(batch), 5, 4).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conf", [None, 0.3])
def test_nms_matches_onnx_runtime(conf) -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (2, 300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(0, 20, (2, 300, 2)).astype(np.float32)], 2)
    boxes[0, :3] = [[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 10]]  # IoU exactly 0.5 with box 0; a duplicate
    scores = rng.uniform(0, 1, (2, 300)).astype(np.float32)
    scores[0, :3] = [0.99, 0.98, 0.3]  # the duplicate exactly at the score threshold
    inputs = ["b", "s", "m", "i"] + (["t"] if conf is not None else [])
    sess = _session([helper.make_node("NonMaxSuppression", inputs, ["o"])],
                    [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 300, 4]),
                     helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 1, 300]),
                     helper.make_tensor_value_info("m", TensorProto.INT64, [1]),
                     helper.make_tensor_value_info("i", TensorProto.FLOAT, [1])]
                    + ([helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])] if conf is not None else []),
                    [helper.make_tensor_value_info("o", TensorProto.INT64, None)])
    feed = {"b": boxes, "s": scores[:, None], "m": np.array([40]), "i": np.array([0.5], np.float32)}
    if conf is not None:
        feed["t"] = np.array([conf], np.float32)
    sel = sess.run(None, feed)[0]
    want = np.full_like(scores, -1.0)
    want[sel[:, 0], sel[:, 2]] = scores[sel[:, 0], sel[:, 2]]
    got = nms_kept_scores(torch.from_numpy(boxes), torch.from_numpy(scores), 40, 0.5, conf).numpy()
    np.testing.assert_array_equal(got, want)
    assert got[0, 1] > 0  # IoU == threshold is kept


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = load_detnet_pytorch_fpn(their_checkpoint(), NUM_CLASSES, input_size=SIZE, topk=POST)
    folder = tmp_path_factory.mktemp("two_stage")
    ckpt = save_checkpoint(model, folder / "fpn.pt")
    return model, export_onnx(ckpt, folder / "fpn.onnx")  # verify=True: ONNX Runtime vs PyTorch inside


def test_graph_contract_and_attributes(exported) -> None:
    model, path = exported
    proto = onnx.load(str(path))
    meta = read_onnx_meta(path)
    assert meta.nms == "onnx" and meta.max_det == 100 and meta.extra["detector"] == "two_stage"
    assert meta.extra["exporter"] == "torchscript" and meta.extra["nms_conf"] == 0.0 and meta.extra["nms_iou"] == 0.3
    assert check_graph(proto, meta) == []
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("NonMaxSuppression") == 2 and ops.count("RoiAlign") == 1
    (ra,) = [n for n in proto.graph.node if n.op_type == "RoiAlign"]
    attrs = {a.name: helper.get_attribute_value(a) for a in ra.attribute}
    assert attrs == {"mode": b"avg", "coordinate_transformation_mode": b"output_half_pixel", "output_height": 8,
                     "output_width": 8, "sampling_ratio": 1, "spatial_scale": 1.0}
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["N", 3, 64, 96]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_matches_pytorch(exported, batch) -> None:
    model, path = exported
    x = np.random.default_rng(10 + batch).integers(0, 256, (batch, 3, 64, 96), dtype=np.uint8)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {"images": x})))
    with torch.no_grad():
        want = dict(zip(names, (t.numpy() for t in model(torch.from_numpy(x)))))
    assert compare_detections(got, want, (64, 96)) == []
    assert (got["num_dets"] > 10).all()
