"""Plugins: EfficientNMS_TRT appended by graph surgery (checked in structure, and the part of the
graph before the plugin run in ONNX Runtime), and loading custom plugin libraries."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest

from detnet_trt.cli import main
from detnet_trt.core.config import GRAPH_NMS, PostprocessConfig
from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS, HOST_NMS_OUTPUTS, ModelMeta
from detnet_trt.export.efficient_nms import EFFICIENT_NMS_OP, PluginError, add_efficient_nms
from detnet_trt.trt.plugins import load_plugin_libraries


def _unchecked(**fields) -> PostprocessConfig:
    """A PostprocessConfig that skips its own range check, to reach the plugin's."""
    post = object.__new__(PostprocessConfig)
    for k, v in fields.items():
        object.__setattr__(post, k, v)
    return post


@pytest.fixture(scope="module")
def nms_onnx(tiny_onnx, tmp_path_factory):
    post = PostprocessConfig(conf=GRAPH_NMS.conf, iou=0.6, max_det=20)
    return add_efficient_nms(tiny_onnx, tmp_path_factory.mktemp("nms") / "tiny.nms.onnx", post=post)


def test_efficient_nms_graph(nms_onnx) -> None:
    model = onnx.load(str(nms_onnx))
    T = onnx.TensorProto
    outs = {v.name: v.type.tensor_type.elem_type for v in model.graph.output}
    assert list(outs) == list(GRAPH_NMS_OUTPUTS)
    assert outs == {"det_boxes": T.FLOAT, "det_scores": T.FLOAT, "det_class_ids": T.INT32, "num_dets": T.INT32}
    (plugin,) = [n for n in model.graph.node if n.op_type == EFFICIENT_NMS_OP]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in plugin.attribute}
    assert attrs["max_output_boxes"] == 20 and attrs["background_class"] == -1
    assert attrs["iou_threshold"] == pytest.approx(0.6) and attrs["box_coding"] == 0
    assert attrs["class_agnostic"] == 0 and attrs["score_activation"] == 0
    assert list(plugin.input)[0] == "boxes"
    shape = [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert shape[1:] == [20, 4]
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props})
    assert meta is not None and meta.nms == "efficient" and meta.max_det == 20
    assert meta.output_names == GRAPH_NMS_OUTPUTS
    assert meta.extra["efficient_nms"]["iou"] == pytest.approx(0.6)


def test_plugin_inputs_computed_in_onnxruntime(tiny_onnx, nms_onnx) -> None:
    """Cut the graph at the plugin: its inputs are the boxes and per-class scores (score at the
    candidate's class, 0 elsewhere) of the host-NMS outputs for the same images."""
    import onnx_graphsurgeon as gs
    import onnxruntime as ort

    graph = gs.import_onnx(onnx.load(str(nms_onnx)))
    (plugin,) = [n for n in graph.nodes if n.op == EFFICIENT_NMS_OP]
    graph.outputs = list(plugin.inputs)
    graph.cleanup()
    cut = gs.export_onnx(graph)
    x = np.random.default_rng(2).integers(0, 256, (2, 3, 128, 128), dtype=np.uint8)
    boxes_in, class_scores = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})
    ref = dict(zip(HOST_NMS_OUTPUTS, ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(
        list(HOST_NMS_OUTPUTS), {"images": x})))
    n, k = ref["scores"].shape
    assert class_scores.shape == (n, k, 3)
    np.testing.assert_array_equal(boxes_in, ref["boxes"])
    want = np.zeros((n, k, 3), np.float32)
    np.put_along_axis(want, ref["class_ids"][..., None].astype(np.int64), ref["scores"][..., None], axis=-1)
    np.testing.assert_array_equal(class_scores, want)


def test_efficient_nms_only_on_host_nms_exports(nms_onnx, tmp_path) -> None:
    with pytest.raises(PluginError, match="has nms='efficient'"):
        add_efficient_nms(nms_onnx, tmp_path / "again.onnx")


def test_efficient_nms_settings_checked(tiny_onnx, tmp_path) -> None:
    with pytest.raises(PluginError, match="out of range"):
        add_efficient_nms(tiny_onnx, tmp_path / "x.onnx", post=_unchecked(conf=0.001, iou=0.0, max_det=100))


# --- custom plugin libraries ---------------------------------------------------------------
def test_missing_plugin_library_is_named(tmp_path) -> None:
    with pytest.raises(PluginError, match=r"plugin library .*nope\.so not found"):
        load_plugin_libraries([tmp_path / "nope.so"])


def test_not_a_library_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.so"
    bad.write_text("not an ELF file")
    with pytest.raises(PluginError, match=r"bad\.so cannot be loaded"):
        load_plugin_libraries([bad])


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a test library")
def test_plugin_library_is_loaded_globally(tmp_path) -> None:
    """A library's static initialisers run on load (that is how REGISTER_TENSORRT_PLUGIN registers
    its creators); its symbols are global (RTLD_GLOBAL), visible to TensorRT."""
    src = tmp_path / "myplugins.c"
    src.write_text(
        "static int registered = 0;\n"
        "__attribute__((constructor)) static void register_creators(void) { registered = 42; }\n"
        "int detnet_test_registered(void) { return registered; }\n"
    )
    lib = tmp_path / "libmyplugins.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    (handle,) = load_plugin_libraries([lib])
    assert handle.detnet_test_registered() == 42
    import ctypes

    assert ctypes.CDLL(None).detnet_test_registered() == 42  # found through the global namespace


def test_build_cli_checks_plugin_paths_first(tiny_onnx, tmp_path, capsys) -> None:
    code = main(["build", str(tiny_onnx), "--fp16", "--plugin", str(tmp_path / "libnope.so"),
                 "-o", str(tmp_path / "m.engine")])
    assert code == 2
    err = capsys.readouterr().err
    assert "libnope.so not found" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# --- the plugin's fast path (efficientNMSInference.cu: EfficientNMSFilterLauncher) -------------------
def _plugin(path) -> tuple[onnx.NodeProto, dict]:
    model = onnx.load(str(path))
    (plugin,) = [n for n in model.graph.node if n.op_type == EFFICIENT_NMS_OP]
    return plugin, {a.name: onnx.helper.get_attribute_value(a) for a in plugin.attribute}


def test_default_threshold_keeps_the_plugin_on_its_fast_path(tiny_onnx, tmp_path, caplog) -> None:
    """The default score threshold is at or above the plugin's kernelSelectThreshold (0.007): the
    filter kernel drops the one-hot zeros and only the K kept scores per image are sorted."""
    import logging

    from detnet_trt.core.config import EFFICIENT_NMS
    from detnet_trt.export.efficient_nms import FAST_PATH_MIN_SCORE

    with caplog.at_level(logging.WARNING):
        out = add_efficient_nms(tiny_onnx, tmp_path / "m.nms.onnx")
    assert not [r for r in caplog.records if "slow path" in r.message]
    plugin, attrs = _plugin(out)
    assert abs(FAST_PATH_MIN_SCORE - 0.007) < 1e-12  # the plugin's kernelSelectThreshold
    assert attrs["score_threshold"] == pytest.approx(EFFICIENT_NMS.conf) and EFFICIENT_NMS.conf >= FAST_PATH_MIN_SCORE
    assert attrs["score_activation"] == 0  # the scores are probabilities already (no logits to defer)
    meta = ModelMeta.from_props({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert meta.extra["efficient_nms"]["fast_path"] is True
    # the score input: N x K x C, one column per class (the plugin's class output is the column)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(out)))
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    k = onnx.load(str(tiny_onnx)).graph.output[1].type.tensor_type.shape.dim[1].dim_value
    assert shapes[plugin.input[1]][1:] == [k, 3]


def test_a_threshold_below_the_fast_path_warns(tiny_onnx, tmp_path, caplog) -> None:
    import logging

    with caplog.at_level(logging.WARNING):
        out = add_efficient_nms(tiny_onnx, tmp_path / "m.nms.onnx", post=PostprocessConfig(conf=0.001, iou=0.5))
    assert any("slow path" in r.message and "0.001" in r.message for r in caplog.records)
    _, attrs = _plugin(out)
    assert attrs["score_threshold"] == pytest.approx(0.001)  # what the user asked for, not silently raised
    meta = ModelMeta.from_props({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert meta.extra["efficient_nms"]["fast_path"] is False


def test_build_cli_nms_conf_defaults_to_the_fast_path() -> None:
    from detnet_trt.cli import build_parser

    args = build_parser().parse_args(["build", "m.onnx", "--fp16", "--nms", "efficient", "-o", "m.engine"])
    assert args.nms_conf >= 0.007
