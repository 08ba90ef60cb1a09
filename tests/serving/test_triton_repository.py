"""``export-triton``: configs checked with Triton's own ModelConfig protobuf, the vendored
post-processing checked against the package's, and the Python-backend model run in the real
``tritonserver`` that PyTriton ships."""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detnet_trt.core.config import PostprocessConfig
from detnet_trt.core.errors import InputError, ModelFileError, OutputExistsError
from detnet_trt.core.fileio import sha256_file
from detnet_trt.core.meta import ModelMeta
from detnet_trt.runtime.letterbox import letterbox_geometry
from detnet_trt.runtime.postprocess import postprocess
from detnet_trt.serving.triton import protocol
from detnet_trt.serving.triton.repository import VENDOR_PACKAGE, TritonRepoOptions, export_triton, read_model

text_format = pytest.importorskip("google.protobuf.text_format")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] not installed")


def _parse(path: Path):
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def _dtype(cfg_type: int) -> str:
    return model_config_pb2.DataType.Name(cfg_type)


@pytest.fixture(scope="module")
def onnx_model(tiny_onnx) -> Path:
    return Path(tiny_onnx)


@pytest.fixture(scope="module")
def repo(onnx_model, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("triton") / "repo"
    options = TritonRepoOptions(max_batch=8, kind="cpu", instances=2, queue_delay_us=500)
    export_triton(onnx_model, dest, options=options, post=PostprocessConfig(conf=0.3, max_det=50))
    return dest


def test_onnx_repository_configs(repo, onnx_model):
    info = read_model(onnx_model)
    meta = info.meta
    net = _parse(repo / "detnet_model" / "config.pbtxt")
    assert net.name == "detnet_model" and net.platform == "onnxruntime_onnx"
    assert net.max_batch_size == 8
    assert [(i.name, _dtype(i.data_type), list(i.dims)) for i in net.input] == [
        ("images", "TYPE_UINT8", list(meta.input_shape()[1:]))
    ]
    assert [o.name for o in net.output] == list(meta.output_names)
    types = {o.name: _dtype(o.data_type) for o in net.output}
    assert types == {"boxes": "TYPE_FP32", "scores": "TYPE_FP32", "class_ids": "TYPE_INT32"}
    assert list(net.output[0].dims)[-1] == 4
    assert list(net.dynamic_batching.preferred_batch_size) == [4, 8]
    assert net.dynamic_batching.max_queue_delay_microseconds == 500
    assert len(net.instance_group) == 1
    assert net.instance_group[0].count == 2
    assert net.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    # the model file sits in version folder 1, byte for byte
    assert sha256_file(repo / "detnet_model" / "1" / "model.onnx") == sha256_file(onnx_model)

    post = _parse(repo / "detnet_postprocess" / "config.pbtxt")
    assert post.backend == "python" and post.max_batch_size == 8
    assert {i.name for i in post.input} == {f"raw_{n}" for n in meta.output_names} | {"orig_size"}
    assert [o.name for o in post.output] == list(protocol.OUTPUTS)
    assert list(post.output[0].dims) == [50, 4]
    assert post.parameters["conf"].string_value == "0.3"
    assert post.parameters["max_det"].string_value == "50"
    assert post.parameters["input_size"].string_value == f"{meta.input_size[0]},{meta.input_size[1]}"
    labels = (repo / "detnet_postprocess" / post.output[2].label_filename).read_text().splitlines()
    assert labels == meta.class_names
    assert (repo / "detnet_postprocess" / "1" / "model.py").is_file()


def test_ensemble_wiring(repo, onnx_model):
    meta = read_model(onnx_model).meta
    ens = _parse(repo / "detnet" / "config.pbtxt")
    assert ens.platform == "ensemble" and ens.max_batch_size == 8
    assert [i.name for i in ens.input] == ["images", "orig_size"]
    assert [o.name for o in ens.output] == list(protocol.OUTPUTS)
    assert json.loads(ens.parameters["class_names"].string_value) == meta.class_names
    assert (repo / "detnet" / "1").is_dir()  # an ensemble still needs its version folder
    # every tensor a step reads exists (ensemble input or an earlier step's output); every output is made
    available = {i.name for i in ens.input}
    for step in ens.ensemble_scheduling.step:
        cfg = _parse(repo / step.model_name / "config.pbtxt")
        assert set(step.input_map) == {i.name for i in cfg.input}, step.model_name
        assert set(step.output_map) <= {o.name for o in cfg.output}, step.model_name
        assert set(step.input_map.values()) <= available, step.model_name
        available |= set(step.output_map.values())
        assert cfg.max_batch_size == ens.max_batch_size
    assert {o.name for o in ens.output} <= available
    assert "tritonserver --model-repository" in (repo / "README.md").read_text()


def test_engine_repository(tmp_path):
    from detnet_trt.core.sidecar import EngineInfo, write_sidecar

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really a plan")  # the exporter only copies it; Triton reads it
    meta = ModelMeta("detnet59", ["a", "b"], (512, 512), layout="nhwc", precision="int8")
    write_sidecar(engine, EngineInfo(meta, "10.3.0", "Orin", (8, 7), "x" * 64, build={"batch": [1, 4, 4]}))
    with pytest.raises(InputError, match="exceeds the largest batch 4"):
        export_triton(engine, tmp_path / "r", options=TritonRepoOptions(max_batch=8))
    with pytest.raises(InputError, match="GPU instance"):
        export_triton(engine, tmp_path / "r", options=TritonRepoOptions(max_batch=4, kind="cpu"))
    plan = export_triton(engine, tmp_path / "r", options=TritonRepoOptions(max_batch=4))
    net = _parse(tmp_path / "r" / "detnet_model" / "config.pbtxt")
    assert net.platform == "tensorrt_plan" and net.default_model_filename == "model.plan"
    assert list(net.input[0].dims) == [512, 512, 3]
    assert [list(o.dims) for o in net.output] == [[1000, 4], [1000], [1000]]  # meta.topk candidates
    assert net.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(net.dynamic_batching.preferred_batch_size) == [4]
    assert (tmp_path / "r" / "detnet_model" / "1" / "model.plan").read_bytes() == b"not really a plan"
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "TensorRT version it was built with (10.3.0)" in readme
    assert plan.configs["detnet"]["parameters"]


def test_in_graph_nms_engine_repository(tmp_path):
    """Engines with in-graph NMS (det_* outputs, per-image num_dets) wire up without name clashes."""
    from detnet_trt.core.sidecar import EngineInfo, write_sidecar

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    meta = ModelMeta("detnet59", ["a"], (320, 320), nms="efficient", max_det=50)
    write_sidecar(engine, EngineInfo(meta, "10.16.0", "H100", (9, 0), "y" * 64, build={"batch": [1, 8, 16]}))
    export_triton(engine, tmp_path / "r", options=TritonRepoOptions(max_batch=16))
    net = _parse(tmp_path / "r" / "detnet_model" / "config.pbtxt")
    assert [o.name for o in net.output] == ["det_boxes", "det_scores", "det_class_ids", "num_dets"]
    assert list(net.output[0].dims) == [50, 4]  # padded to the engine's max_det
    num = net.output[3]
    assert list(num.dims) == [1] and list(num.reshape.shape) == []  # (N,) per batch: one value per image
    post = _parse(tmp_path / "r" / "detnet_postprocess" / "config.pbtxt")
    names = [i.name for i in post.input] + [o.name for o in post.output]
    assert len(names) == len(set(names))
    assert list(_parse(tmp_path / "r" / "detnet" / "config.pbtxt").output[0].dims) == [100, 4]


def test_refuses_to_overwrite_and_bad_inputs(repo, onnx_model, tmp_path):
    with pytest.raises(OutputExistsError, match="--force"):
        export_triton(onnx_model, repo)
    with pytest.raises(InputError, match="--max-batch"):
        export_triton(onnx_model, tmp_path / "x", options=TritonRepoOptions(max_batch=0))
    with pytest.raises(InputError, match="preferred batch sizes"):
        export_triton(onnx_model, tmp_path / "x", options=TritonRepoOptions(max_batch=4, preferred_batch_sizes=(8,)))
    with pytest.raises(InputError, match="model name"):
        export_triton(onnx_model, tmp_path / "x", options=TritonRepoOptions(name="bad name"))
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"")
    with pytest.raises(ModelFileError, match="export the checkpoint first"):
        export_triton(bad, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "fields,flag",
    [
        ({"name": "bad name"}, "--name"),
        ({"max_batch": 0}, "--max-batch"),
        ({"instances": 0}, "--instances"),
        ({"kind": "tpu"}, "--kind"),
        ({"max_batch": 4, "preferred_batch_sizes": (2, 8)}, "--preferred-batch"),
        ({"queue_delay_us": -1}, "--queue-delay-us"),
    ],
)
def test_bad_repository_option_names_its_flag(fields, flag):
    with pytest.raises(InputError, match=flag):
        TritonRepoOptions(**fields)


def test_cli_export_triton_checks_options_before_reading_the_model(tmp_path, capsys):
    from detnet_trt.cli import main

    assert main(["export-triton", str(tmp_path / "missing.onnx"), "--repo", str(tmp_path / "r"),
                 "--instances", "0"]) == 2
    assert "argument --instances: expected an integer in 1..64, got 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_force_replaces_repository(onnx_model, tmp_path):
    dest = tmp_path / "repo"
    export_triton(onnx_model, dest, options=TritonRepoOptions(max_batch=2, kind="cpu"))
    pycache = dest / "detnet_postprocess" / "1" / "__pycache__"  # what Triton's Python backend writes
    pycache.mkdir()
    (pycache / "model.cpython-310.pyc").write_bytes(b"pyc")
    export_triton(onnx_model, dest, options=TritonRepoOptions(max_batch=4, kind="cpu"), force=True)
    assert not pycache.exists()
    assert _parse(dest / "detnet" / "config.pbtxt").max_batch_size == 4
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temporary folders left


def test_force_never_deletes_files_it_did_not_write(onnx_model, tmp_path):
    from detnet_trt.core.fileio import OutputError

    dest = tmp_path / "repo"
    export_triton(onnx_model, dest, options=TritonRepoOptions(kind="cpu"))
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds files detnet-trt did not write \(notes.txt\)"):
        export_triton(onnx_model, dest, options=TritonRepoOptions(kind="cpu"), force=True)
    assert (dest / "notes.txt").read_text() == "mine"
    user = tmp_path / "work"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="not written by detnet-trt export-triton") as err:
        export_triton(onnx_model, user, options=TritonRepoOptions(kind="cpu"), force=True)
    assert "\n" not in str(err.value) and "--repo" in str(err.value)
    assert (user / "thesis.tex").read_text() == "years of work"
    marker = json.loads((dest / ".detnet-trt-repository.json").read_text())
    assert marker["format"] == "detnet-trt-triton-repository"
    assert "detnet_model/1/model.onnx" in marker["files"] and "README.md" in marker["files"]


@pytest.mark.parametrize("where", [".", "..", "/"])
def test_current_parent_and_root_folders_are_refused(onnx_model, tmp_path, monkeypatch, capsys, where):
    from detnet_trt.cli import main

    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for extra in ([], ["--force"]):
        assert main(["export-triton", str(onnx_model), "--repo", where, "--kind", "cpu", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("detnet-trt export-triton: error: --repo") and err.count("\n") == 1
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_repository_holding_the_model_is_refused(onnx_model, tmp_path):
    from detnet_trt.core.fileio import OutputError

    models = tmp_path / "models"
    models.mkdir()
    m = models / "m.onnx"
    m.write_bytes(Path(onnx_model).read_bytes())
    with pytest.raises(OutputError, match="holds the input"):
        export_triton(m, models, options=TritonRepoOptions(kind="cpu"), force=True)
    dest = tmp_path / "repo"
    export_triton(m, dest, options=TritonRepoOptions(kind="cpu"))
    inside = dest / "detnet_model" / "1" / "model.onnx"
    with pytest.raises(OutputError, match="holds the input"):
        export_triton(inside, dest, options=TritonRepoOptions(kind="cpu"), force=True)
    assert inside.is_file() and m.is_file()


def test_model_is_copied_not_linked_unless_asked(onnx_model, tmp_path, capsys):
    from detnet_trt.cli import main

    m = tmp_path / "m.onnx"
    m.write_bytes(Path(onnx_model).read_bytes())
    original = m.read_bytes()
    export_triton(m, tmp_path / "r", options=TritonRepoOptions(kind="cpu"))
    placed = tmp_path / "r" / "detnet_model" / "1" / "model.onnx"
    assert not placed.samefile(m)
    with open(placed, "r+b") as f:  # a later write into the repository in place
        f.write(b"X" * 16)
    assert m.read_bytes() == original
    assert main(["export-triton", str(m), "--repo", str(tmp_path / "l"), "--kind", "cpu", "--link"]) == 0
    assert (tmp_path / "l" / "detnet_model" / "1" / "model.onnx").samefile(m)


def test_repository_follows_the_umask(onnx_model, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        export_triton(onnx_model, tmp_path / "r", options=TritonRepoOptions(kind="cpu"))
    finally:
        os.umask(old)
    r = tmp_path / "r"
    assert stat.S_IMODE(r.stat().st_mode) == 0o755  # not mkdtemp's 0700: a tritonserver container reads it
    assert stat.S_IMODE((r / "README.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((r / "detnet_model" / "1" / "model.onnx").stat().st_mode) == 0o644


def test_repository_parent_that_is_a_file_is_one_line(onnx_model, tmp_path, capsys):
    from detnet_trt.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["export-triton", str(onnx_model), "--repo", str(tmp_path / "f" / "r"), "--kind", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and err.count("\n") == 1


def test_onnx_external_data_travels_with_the_model(onnx_model, tmp_path):
    import onnx

    from detnet_trt.runtime.backends import load_backend

    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(onnx.load(str(onnx_model)), str(src / "m.onnx"), save_as_external_data=True,
                    location="m.weights")
    export_triton(src / "m.onnx", tmp_path / "r", options=TritonRepoOptions(kind="cpu"))
    version = tmp_path / "r" / "detnet_model" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["m.weights", "model.onnx"]
    x = np.zeros((1, *read_model(onnx_model).meta.input_shape()[1:]), np.uint8)
    with load_backend(version / "model.onnx") as a, load_backend(onnx_model) as b:
        np.testing.assert_array_equal(a.infer(x)["scores"], b.infer(x)["scores"])


def test_cli_export_triton(onnx_model, tmp_path, capsys):
    from detnet_trt.cli import main

    assert main(["export-triton", str(onnx_model), "--repo", str(tmp_path / "r"), "--name", "det",
                 "--max-batch", "4", "--kind", "cpu"]) == 0
    assert "tritonserver --model-repository=" in capsys.readouterr().out
    assert _parse(tmp_path / "r" / "det" / "config.pbtxt").ensemble_scheduling.step[0].model_name == "det_model"
    assert main(["export-triton", str(onnx_model), "--repo", str(tmp_path / "r")]) == 2
    assert "--force" in capsys.readouterr().err


def _random_candidates(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, k, 2)).astype(np.float32)
    wh = rng.uniform(2, 40, (n, k, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=-1)
    scores = rng.uniform(0, 1, (n, k)).astype(np.float32)
    cls = rng.integers(0, 3, (n, k)).astype(np.int32)
    return {"boxes": boxes, "scores": scores, "class_ids": cls}


def test_vendored_postprocess_is_the_package_code_without_opencv(repo, monkeypatch):
    """The copy in the repository imports with NumPy alone and gives the package's results."""
    vdir = repo / "detnet_postprocess" / "1"
    monkeypatch.setitem(sys.modules, "cv2", None)  # a stock Triton container has no OpenCV
    monkeypatch.syspath_prepend(str(vdir))
    for name in [m for m in sys.modules if m.startswith(VENDOR_PACKAGE)]:
        monkeypatch.delitem(sys.modules, name)
    try:
        vpost = importlib.import_module(f"{VENDOR_PACKAGE}.postprocess")
        vpre = importlib.import_module(f"{VENDOR_PACKAGE}.preprocess")
        vproto = importlib.import_module(f"{VENDOR_PACKAGE}.protocol")
        outputs = _random_candidates(3, 300)
        sizes = [(480, 640), (100, 100), (64, 900)]
        got = vpost.postprocess(outputs, [vpre.letterbox_geometry(s, (128, 128)) for s in sizes], 0.3, 0.5, 50)
        want = postprocess(outputs, [letterbox_geometry(s, (128, 128)) for s in sizes], 0.3, 0.5, 50)
        assert [len(d) for d in got] == [len(d) for d in want] and len(want[0]) > 0
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-4)
            np.testing.assert_array_equal(g.scores, w.scores)
            np.testing.assert_array_equal(g.class_ids, w.class_ids)
        assert vproto.OUTPUTS == protocol.OUTPUTS
    finally:
        for name in [m for m in sys.modules if m.startswith(VENDOR_PACKAGE)]:
            sys.modules.pop(name, None)


def test_protocol_names_match_meta():
    from detnet_trt.core.meta import GRAPH_NMS_OUTPUTS

    assert protocol.OUTPUTS == GRAPH_NMS_OUTPUTS


_ORT_STAND_IN = """\
import json
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:  # the test's stand-in for Triton's onnxruntime backend
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.outputs = [o["name"] for o in cfg["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "images").as_numpy()
            outs = self.sess.run(self.outputs, {"images": images})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, o) for n, o in zip(self.outputs, outs)]))
        return responses
"""


def _swap_network_for_python_stand_in(repo: Path, dest: Path) -> None:
    """Copy ``repo`` to ``dest`` and serve its ONNX network through a Python-backend ONNX Runtime
    stand-in (PyTriton's tritonserver has no onnxruntime backend). Only the network's platform
    changes: its inputs, outputs and batching, the post-processing model and the ensemble are
    the generated ones."""
    import shutil

    shutil.copytree(repo, dest)
    cfg_path = dest / "detnet_model" / "config.pbtxt"
    cfg = _parse(cfg_path)
    cfg.platform = ""
    cfg.backend = "python"
    cfg.default_model_filename = ""
    cfg_path.write_text(text_format.MessageToString(cfg))
    (dest / "detnet_model" / "1" / "model.py").write_text(_ORT_STAND_IN)


@pytest.mark.slow
def test_repository_runs_in_bundled_tritonserver(repo, onnx_model, tmp_path):
    """Loads the generated repository in the real tritonserver that PyTriton ships: the Python-
    backend post-processing model, and the ensemble end to end (the network through a Python-
    backend ONNX Runtime stand-in, see above); answers are compared with the package's own."""
    pytest.importorskip("pytriton", reason="nvidia-pytriton not installed")
    import tritonclient.http as httpclient

    from detnet_trt.runtime.backends import load_backend
    from detnet_trt.runtime.detector import Detector
    from detnet_trt.serving.triton.client import DetnetClient
    from detnet_trt.serving.triton.server import bundled_tritonserver, free_port

    served = tmp_path / "repo"
    _swap_network_for_python_stand_in(repo, served)
    exe, backends, env = bundled_tritonserver(tmp_path)
    port = free_port()
    log = tmp_path / "tritonserver.log"
    cmd = [
        str(exe), f"--model-repository={served}", f"--backend-directory={backends}", "--model-control-mode=explicit",
        "--load-model=detnet_model", "--load-model=detnet_postprocess", "--load-model=detnet",
        "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false",
        "--exit-timeout-secs=5",
    ]
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and proc.poll() is None and not ready:
            with contextlib.suppress(Exception):  # not listening yet
                ready = client.is_model_ready("detnet")
            time.sleep(0.2)
        if not ready:
            tail = log.read_text(errors="replace")[-3000:]
            if proc.poll() is not None and "error while loading shared libraries" in tail:
                pytest.skip(f"bundled tritonserver cannot start on this machine: {tail.strip()[-300:]}")
            pytest.fail(f"the repository did not become ready; tritonserver log tail:\n{tail}")

        # 1. the post-processing model on its own, on random candidates
        k = int(_parse(served / "detnet_postprocess" / "config.pbtxt").input[1].dims[0])  # candidates per image
        cand = _random_candidates(2, k, seed=1)
        orig = np.array([[480, 640], [0, 0]], np.int32)  # second image: keep model-input pixels
        inputs = []
        for name, arr in [*((f"raw_{n}", a) for n, a in cand.items()), ("orig_size", orig)]:
            t = httpclient.InferInput(name, list(arr.shape), "FP32" if arr.dtype == np.float32 else "INT32")
            t.set_data_from_numpy(arr)
            inputs.append(t)
        res = client.infer("detnet_postprocess", inputs)
        got = protocol.unpack_detections({n: res.as_numpy(n) for n in protocol.OUTPUTS})
        input_size = read_model(onnx_model).meta.input_size
        want = postprocess(cand, [letterbox_geometry((480, 640), input_size), None], 0.3, 0.5, 50)
        assert [len(g[0]) for g in got] == [len(w) for w in want] and len(want[0]) > 0
        for (b, sc, c), w in zip(got, want):
            np.testing.assert_allclose(b, w.boxes, atol=1e-4)
            np.testing.assert_array_equal(sc, w.scores)
            np.testing.assert_array_equal(c, w.class_ids)
        assert res.as_numpy("det_class_ids")[0, len(want[0]) :].tolist() == [-1] * (50 - len(want[0]))

        # 2. the ensemble, called as a user would, against the same model run locally
        rng = np.random.default_rng(3)
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(90, 160), (300, 200), (64, 64)]]
        with DetnetClient(f"127.0.0.1:{port}", "detnet") as dc:
            assert dc.class_names == read_model(onnx_model).meta.class_names
            remote = dc.detect(frames)
        with load_backend(onnx_model) as be:
            local = Detector(be, PostprocessConfig(conf=0.3, iou=0.5, max_det=50), max_batch=len(frames))(frames)
        assert [len(d) for d in remote] == [len(d) for d in local] and any(len(d) for d in local)
        for r, lo in zip(remote, local):
            np.testing.assert_array_equal(r.class_ids, lo.class_ids)
            np.testing.assert_allclose(r.scores, lo.scores, atol=1e-5)
            np.testing.assert_allclose(r.boxes, lo.boxes, atol=1e-2)
    finally:
        client.close()
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_engine_that_does_not_match_its_sidecar_is_refused(tmp_path):
    """export-triton verifies the engine's recorded sha256 before it copies anything (issue 16)."""
    import hashlib

    from detnet_trt.core.errors import ModelFileError
    from detnet_trt.core.sidecar import EngineInfo, write_sidecar

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"the plan as built")
    meta = ModelMeta("detnet59", ["a", "b"], (512, 512), precision="fp16")
    write_sidecar(engine, EngineInfo(meta, "10.3.0", "Orin", (8, 7), "x" * 64, build={"batch": [1, 4, 4]},
                                     engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest()))
    export_triton(engine, tmp_path / "ok", options=TritonRepoOptions(max_batch=4))  # intact: accepted
    engine.write_bytes(b"the plan as built, then damaged")
    with pytest.raises(ModelFileError, match="is corrupt"):
        export_triton(engine, tmp_path / "r", options=TritonRepoOptions(max_batch=4))
    assert not (tmp_path / "r").exists()
