"""Models for the Triton tests: the EXPORT engineer's ``tiny_onnx`` fixture when it exists, else a
small hand-built ONNX graph with the same tensor contract (:mod:`detnet_trt.meta`), and an ONNX
Runtime backend for it when ``detnet_trt.backends.ort`` is not there yet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from detnet_trt.backends.base import Backend
from detnet_trt.meta import ModelMeta


def make_contract_onnx(path: Path, size: int = 64, cell: int = 16, num_classes: int = 3) -> Path:
    """A deterministic stand-in detector: per-cell mean intensity per channel -> class scores; one
    fixed box per cell (boxes of neighbouring cells overlap, so NMS has work). Input ``images``
    uint8 ``N x 3 x size x size``; outputs ``boxes``/``scores``/``class_ids`` as the contract says."""
    g = size // cell
    k = g * g * num_classes
    cell_boxes = []
    for i in range(g):
        for j in range(g):
            cell_boxes.append([(j - 1.5) * cell, (i - 1.5) * cell, (j + 2.5) * cell, (i + 2.5) * cell])
    boxes = np.asarray(cell_boxes * num_classes, np.float32).reshape(1, k, 4)
    cls = np.repeat(np.arange(num_classes, dtype=np.int32), g * g).reshape(1, k)
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[cell, cell], strides=[cell, cell]),
        helper.make_node("Sub", ["pooled", "c100"], ["centred"]),
        helper.make_node("Div", ["centred", "c30"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probs"]),
        helper.make_node("Shape", ["images"], ["ishape"]),
        helper.make_node("Slice", ["ishape", "zero", "one"], ["n"]),
        helper.make_node("Concat", ["n", "minus1"], ["sshape"], axis=0),
        helper.make_node("Reshape", ["probs", "sshape"], ["scores"]),
        helper.make_node("Concat", ["n", "kk4"], ["bshape"], axis=0),
        helper.make_node("Expand", ["cboxes", "bshape"], ["boxes"]),
        helper.make_node("Concat", ["n", "kk"], ["cshape"], axis=0),
        helper.make_node("Expand", ["cids", "cshape"], ["class_ids"]),
    ]
    inits = [
        helper.make_tensor("c100", TensorProto.FLOAT, [], [100.0]),
        helper.make_tensor("c30", TensorProto.FLOAT, [], [30.0]),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("minus1", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("kk4", TensorProto.INT64, [2], [k, 4]),
        helper.make_tensor("kk", TensorProto.INT64, [1], [k]),
        onnx.numpy_helper.from_array(boxes, "cboxes"),
        onnx.numpy_helper.from_array(cls, "cids"),
    ]
    graph = helper.make_graph(
        nodes,
        "contract_stand_in",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", k, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k]),
            helper.make_tensor_value_info("class_ids", TensorProto.INT32, ["N", k]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMeta("contract_stand_in", [f"class{i}" for i in range(num_classes)], (size, size), topk=k)
    helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class OrtBackend(Backend):
    """Minimal ONNX Runtime backend (used only until detnet_trt.backends.ort exists)."""

    name = "onnxruntime"

    def __init__(self, path: Path) -> None:
        m = onnx.load(str(path), load_external_data=False)
        meta = ModelMeta.from_props({p.key: p.value for p in m.metadata_props})
        assert meta is not None
        super().__init__(meta)
        self.path = path

    def _open(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def _infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        names = list(self.meta.output_names)
        return dict(zip(names, self.sess.run(names, {"images": images})))

    def _close(self) -> None:
        self.sess = None


def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_onnx`` from conftest when available, else the hand-built stand-in."""
    try:
        return Path(request.getfixturevalue("tiny_onnx"))
    except pytest.FixtureLookupError:
        return make_contract_onnx(tmp_path_factory.mktemp("triton_model") / "stand_in.onnx")


def open_backend(path: Path) -> Backend:
    try:
        from detnet_trt.backends import load_backend
        from detnet_trt.backends.ort import OnnxRuntimeBackend  # noqa: F401

        return load_backend(path)
    except ImportError:
        return OrtBackend(path)
