"""ONNX export: the graph contract, TensorRT 8.6 op coverage, metadata, parity with PyTorch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from detnet_trt.core.config import GRAPH_NMS, PostprocessConfig
from detnet_trt.core.errors import InputError, ModelFileError, OutputExistsError
from detnet_trt.core.fileio import sha256_file
from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS, ModelMeta
from detnet_trt.core.onnx_meta import CONTENT_KEY, read_onnx_meta
from detnet_trt.export.check import DATA_DEPENDENT_OPS, ExportCheckError, check_graph, trt86_supported_ops
from detnet_trt.export.onnx import compare_outputs, export_onnx, untied
from detnet_trt.runtime.backends.ort import OnnxRuntimeBackend
from detnet_trt.runtime.backends.torch_backend import TorchBackend
from detnet_trt.runtime.postprocess import postprocess

TINY_CLASSES = ["circle", "square", "triangle"]  # as tests/conftest.py builds tiny_checkpoint
TINY_INPUT = (128, 128)


def _batch(n: int, layout: str = "nchw", seed: int = 1) -> np.ndarray:
    h, w = TINY_INPUT
    shape = (n, 3, h, w) if layout == "nchw" else (n, h, w, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]


def test_tiny_onnx_graph_contract(tiny_onnx) -> None:
    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert model.ir_version == 8  # what TensorRT 8.6's bundled ONNX reads
    (inp,) = model.graph.input
    assert inp.name == "images" and inp.type.tensor_type.elem_type == TensorProto.UINT8
    assert _dims(inp) == ["N", 3, *TINY_INPUT]
    outs = {o.name: (_dims(o), o.type.tensor_type.elem_type) for o in model.graph.output}
    k = read_onnx_meta(tiny_onnx).topk
    assert outs == {
        "boxes": (["N", k, 4], TensorProto.FLOAT),
        "scores": (["N", k], TensorProto.FLOAT),
        "class_ids": (["N", k], TensorProto.INT32),
    }
    assert check_graph(model, read_onnx_meta(tiny_onnx)) == []
    assert {n.op_type for n in model.graph.node if "images" in n.input} == {"Cast"}  # TensorRT 8.6 rule


def test_every_op_is_in_the_trt86_list(tiny_onnx) -> None:
    supported = trt86_supported_ops()
    assert {"Conv", "TopK", "NonMaxSuppression", "Resize", "GatherElements"} <= supported
    assert not {"Unique", "MaxRoiPool", "ConvInteger"} & supported  # rows marked "N" in the table
    ops = {n.op_type for n in onnx.load(str(tiny_onnx)).graph.node}
    assert ops and ops <= supported, ops - supported


def test_no_data_dependent_shapes(tiny_onnx) -> None:
    model = onnx.load(str(tiny_onnx))
    assert not {n.op_type for n in model.graph.node} & DATA_DEPENDENT_OPS
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consts = {o: n for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    (topk,) = [n for n in model.graph.node if n.op_type == "TopK"]
    assert topk.input[1] in inits or topk.input[1] in consts
    if topk.input[1] in inits:
        assert inits[topk.input[1]].tolist() == [read_onnx_meta(tiny_onnx).topk]
    # every intermediate tensor has a static shape apart from the batch dimension
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    symbolic = {
        vi.name: _dims(vi)
        for vi in inferred.graph.value_info
        if not vi.type.tensor_type.HasField("shape") or any(isinstance(d, str) for d in _dims(vi)[1:])
    }
    assert symbolic == {}


def test_metadata_round_trip(tiny_checkpoint, tiny_onnx) -> None:
    meta = read_onnx_meta(tiny_onnx)
    assert isinstance(meta, ModelMeta)
    assert meta.model == "detnet_tiny" and meta.class_names == TINY_CLASSES
    assert meta.input_size == TINY_INPUT and meta.layout == "nchw" and meta.nms == "host"
    assert meta.checkpoint_sha256 == sha256_file(tiny_checkpoint)
    assert meta.mean == pytest.approx((123.675, 116.28, 103.53)) and meta.extra["exporter"] == "dynamo"
    props = {p.key for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert set(meta.to_props()) | {CONTENT_KEY} == props  # + the graph's own hash (issue 16)


@pytest.mark.parametrize("batch", [1, 4])
def test_parity_onnxruntime_vs_pytorch(tiny_checkpoint, tiny_onnx, batch: int) -> None:
    images = _batch(batch, seed=batch)
    with TorchBackend(tiny_checkpoint) as tb, OnnxRuntimeBackend(tiny_onnx) as ob:
        want, got = tb.infer(images), ob.infer(images)
    assert compare_outputs(got, want, TINY_INPUT, rtol=1e-4) == []
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-4)
    mask = untied(want["scores"])
    assert mask.mean() > 0.5  # most ranks are unambiguous, so the order check means something
    assert np.array_equal(got["class_ids"][mask], want["class_ids"][mask])
    np.testing.assert_allclose(got["boxes"][mask], want["boxes"][mask], rtol=1e-4, atol=1e-4 * max(TINY_INPUT))
    assert np.all(np.diff(got["scores"], axis=1) <= 0)


def test_compare_outputs_notices_a_swap() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1]], np.float32)
    boxes = np.arange(16, dtype=np.float32).reshape(1, 4, 4) * 10
    cls = np.array([[0, 1, 2, 0]], np.int32)
    want = {"boxes": boxes, "scores": scores, "class_ids": cls}
    assert compare_outputs(dict(want), want, (128, 128)) == []
    swapped = {"boxes": boxes[:, [1, 0, 2, 3]], "scores": scores, "class_ids": cls[:, [1, 0, 2, 3]]}
    problems = compare_outputs(swapped, want, (128, 128))
    assert any("class ids" in p for p in problems) and any("boxes" in p for p in problems)


def test_nhwc_export_matches_nchw(tiny_checkpoint, tiny_onnx, tmp_path) -> None:
    path = export_onnx(tiny_checkpoint, tmp_path / "nhwc.onnx", layout="nhwc")
    meta = read_onnx_meta(path)
    assert meta.layout == "nhwc" and meta.input_shape() == ("N", *TINY_INPUT, 3)
    assert _dims(onnx.load(str(path)).graph.input[0]) == ["N", *TINY_INPUT, 3]
    nhwc = _batch(2, "nhwc")
    with OnnxRuntimeBackend(path) as a, OnnxRuntimeBackend(tiny_onnx) as b:
        got, want = a.infer(nhwc), b.infer(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)))
        with pytest.raises(InputError, match="images"):
            a.infer(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)))
    assert compare_outputs(got, want, TINY_INPUT) == []


def test_onnx_nms_matches_host_nms(tiny_checkpoint, tiny_onnx, tmp_path) -> None:
    conf, iou, max_det = 0.55, 0.5, 20  # some images fill all 20 rows, others are padded
    post = PostprocessConfig(conf=conf, iou=iou, max_det=max_det)
    path = export_onnx(tiny_checkpoint, tmp_path / "nms.onnx", nms="onnx", post=post)
    meta = read_onnx_meta(path)
    assert meta.nms == "onnx" and meta.max_det == max_det and meta.output_names == GRAPH_NMS_OUTPUTS
    assert meta.extra["nms_conf"] == conf and meta.extra["nms_iou"] == iou
    model = onnx.load(str(path))
    assert check_graph(model, meta) == []
    assert {n.op_type for n in model.graph.node} <= trt86_supported_ops()
    images = _batch(3, seed=5)
    with OnnxRuntimeBackend(path) as g, OnnxRuntimeBackend(tiny_onnx) as h:
        graph_out, host_out = g.infer(images), h.infer(images)
    assert graph_out["det_boxes"].shape == (3, max_det, 4) and graph_out["num_dets"].dtype == np.int32
    host = postprocess(host_out, None, conf=conf, iou=iou, max_det=max_det)
    graph = postprocess(graph_out, None, conf=0.0, iou=iou, max_det=max_det)
    nums = graph_out["num_dets"].tolist()
    assert nums == [len(d) for d in host]
    assert any(0 < n < max_det for n in nums) and max_det in nums
    for i, (a, b) in enumerate(zip(graph, host)):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-5, atol=1e-3)
        assert a.class_ids.tolist() == b.class_ids.tolist()
        n = nums[i]
        assert not graph_out["det_scores"][i, n:].any() and not graph_out["det_boxes"][i, n:].any()


def test_refuses_to_overwrite_without_force(tiny_checkpoint, tiny_onnx, tmp_path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"user data")
    with pytest.raises(OutputExistsError, match="--force"):
        export_onnx(tiny_checkpoint, out)
    assert out.read_bytes() == b"user data"
    export_onnx(tiny_checkpoint, out, force=True)
    assert read_onnx_meta(out).model == "detnet_tiny"


def test_failed_export_leaves_no_file(tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch) -> None:
    import detnet_trt.export.onnx as ex

    monkeypatch.setattr(ex, "check_graph", lambda model, meta=None: ["Foo node: not supported"])
    with pytest.raises(ExportCheckError, match="Foo node"):
        export_onnx(tiny_checkpoint, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"layout": "chw"}, "layout"),
        ({"nms": "efficient"}, "EfficientNMS"),
        ({"topk": 5000}, "3840"),
        ({"opset": 13}, "opset"),
        ({"nms": "onnx", "post": replace(GRAPH_NMS, max_det=400)}, "max-det"),  # more than the tiny model's top-K (300)
        ({"nms": "onnx", "post": replace(GRAPH_NMS, conf=1.0)}, "conf < 1"),  # a config allows 1, the graph not
        ({"exporter": "tf"}, "exporter"),
    ],
)
def test_bad_arguments(tiny_checkpoint, tmp_path, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        export_onnx(tiny_checkpoint, tmp_path / "x.onnx", **kwargs)


def test_output_that_is_a_folder(tiny_checkpoint, tmp_path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        export_onnx(tiny_checkpoint, tmp_path, force=True)


def test_bad_checkpoints(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="junk.pt"):
        export_onnx(junk, tmp_path / "x.onnx")


def test_read_onnx_meta_errors(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        read_onnx_meta(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not protobuf" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx"):
        read_onnx_meta(garbage)
    foreign = tmp_path / "foreign.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(ModelFileError, match="no detnet_trt metadata"):
        read_onnx_meta(foreign)


def test_check_graph_reports_problems() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    k = helper.make_tensor_value_info("k", TensorProto.INT64, [1])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("nz", "v", "u")]
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("TopK", ["x", "k"], ["v", "i"]),
        helper.make_node("Unique", ["x"], ["u"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x, k], outs), opset_imports=[helper.make_opsetid("", 18)]
    )
    text = " | ".join(check_graph(model))
    assert "opset 18" in text and "NonZero" in text and "depends on data" in text
    assert "K is not a constant" in text and "Unique" in text and "not supported by TensorRT 8.6" in text
    # TensorRT 8.6: a uint8 input may feed only a Cast (the model casts before permuting / flipping)
    img = helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 3, 4, 4])
    idx = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "idx")
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Gather", ["images", "idx"], ["g"], axis=1), helper.make_node("Cast", ["g"], ["y"], to=1)]
    bad = helper.make_model(helper.make_graph(nodes, "g", [img], [out], [idx]), opset_imports=[helper.make_opsetid("", 17)])
    assert any("reads the uint8 input" in p for p in check_graph(bad))


@pytest.mark.slow
def test_torchscript_exporter_gives_the_same_outputs(tiny_checkpoint, tiny_onnx, tmp_path) -> None:
    path = export_onnx(tiny_checkpoint, tmp_path / "ts.onnx", exporter="torchscript")
    model = onnx.load(str(path))
    assert check_graph(model, read_onnx_meta(path)) == []
    images = _batch(2, seed=3)
    with OnnxRuntimeBackend(path) as a, OnnxRuntimeBackend(tiny_onnx) as b:
        assert compare_outputs(a.infer(images), b.infer(images), TINY_INPUT) == []
    assert tuple(o.name for o in model.graph.output) == HOST_NMS_OUTPUTS
