"""``detnet-trt export-triton``: a model repository for a stock Triton Inference Server.

Layout written under ``repo`` (``NAME`` defaults to ``detnet``)::

    repo/
      README.md                     the tritonserver command and the request/response contract
      .detnet-trt-repository.json   the format and every file written: what --force may replace
      NAME_model/                   the network: tensorrt_plan (engine) or onnxruntime_onnx (ONNX)
        config.pbtxt                inputs/outputs from the model's metadata, dynamic batching,
        1/model.plan | 1/model.onnx instance group; the model file: a copy (a hard link with --link)
      NAME_postprocess/             Python backend: class-aware NMS + letterbox undo
        config.pbtxt
        labels.txt                  class names, one a line (label_filename of det_class_ids)
        1/model.py
        1/detnet_trt_post/          a generated copy of the package's post-processing modules
      NAME/                         the ensemble clients call: images + orig_size -> detections
        config.pbtxt
        1/

Post-processing in the Python backend is the package's own code, not a re-implementation: a
stock Triton container has neither ``detnet_trt`` nor its dependencies (torch, OpenCV), so the
exporter copies the source of :mod:`detnet_trt.core.meta`, :mod:`detnet_trt.runtime.postprocess`,
:mod:`detnet_trt.serving.triton.protocol` and the pure-NumPy letterbox geometry of
:mod:`detnet_trt.runtime.letterbox` into ``1/detnet_trt_post/`` (NumPy is all they need; OpenCV's NMS is
used when the container happens to have it, else the NumPy path). The copy is made from the
installed package at export time, so it is exactly the code the runtime runs; its SHA-256 is in
the repository README.

Configs are written in protobuf text format and checked in the tests with Triton's own
``ModelConfig`` message (``tritonclient.grpc.model_config_pb2``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._version import __version__
from ...core.config import PostprocessConfig
from ...core.errors import InputError, ModelFileError, OutputExistsError
from ...core.fileio import (
    OutputError,
    atomic_write_text,
    check_not_input,
    check_output_dir,
    dir_mode,
    output_error,
    sha256_bytes,
)
from ...core.limits import BATCH, INSTANCES, QUEUE_DELAY_US, check_ranges
from ...core.meta import INPUT_NAME, ModelMeta
from . import protocol as _proto_mod  # the module itself (names of tensors)

ENGINE_SUFFIXES = (".engine", ".plan")
VENDOR_PACKAGE = "detnet_trt_post"
RAW_PREFIX = "raw_"  # input names of the post-processing model: raw_<network output>

_NP_TO_TRITON = {
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "bool": "TYPE_BOOL",
}
# ONNX TensorProto element types -> numpy names (the few a detnet_trt graph uses).
_ONNX_TO_NP = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}


@dataclass(frozen=True)
class _Enum:
    """A bare protobuf enum value in text format (``TYPE_FP32``, ``KIND_GPU``)."""

    name: str


@dataclass
class TensorSpec:
    """One input or output of a Triton model: name, numpy dtype name, per-item dims (no batch)."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "data_type": _Enum(_NP_TO_TRITON[self.dtype])}
        if self.dims:
            d["dims"] = list(self.dims)
        else:  # a per-image scalar (e.g. num_dets of shape (N,)): Triton wants [1] reshaped to []
            d["dims"] = [1]
            d["reshape"] = {"shape": []}
        return d


# --- protobuf text format ------------------------------------------------------------------------
def _pbtxt_value(v: Any, indent: int) -> str:
    if isinstance(v, _Enum):
        return v.name
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string literal is a valid protobuf text literal
    if isinstance(v, dict):
        return "{\n" + _pbtxt_fields(v, indent + 2) + " " * indent + "}"
    raise TypeError(f"cannot write {type(v).__name__} to protobuf text")


def _pbtxt_fields(fields: dict[str, Any], indent: int = 0) -> str:
    pad = " " * indent
    lines = []
    for key, v in fields.items():
        if isinstance(v, list) and (not v or not isinstance(v[0], dict)):
            lines.append(f"{pad}{key}: [{', '.join(_pbtxt_value(x, indent) for x in v)}]\n")
        elif isinstance(v, list):
            for item in v:  # repeated message: one block per item
                lines.append(f"{pad}{key} {_pbtxt_value(item, indent)}\n")
        elif isinstance(v, dict):
            lines.append(f"{pad}{key} {_pbtxt_value(v, indent)}\n")
        else:
            lines.append(f"{pad}{key}: {_pbtxt_value(v, indent)}\n")
    return "".join(lines)


def to_pbtxt(config: dict[str, Any]) -> str:
    """A model config as a nested dict -> Triton ``config.pbtxt`` text."""
    return _pbtxt_fields(config)


def _parameters(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Triton's ``parameters`` map (``map<string, ModelParameter>``) as repeated key/value entries."""
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in params.items()]


# --- reading the model ---------------------------------------------------------------------------
@dataclass
class ModelInfo:
    """What the repository needs to know about the model file."""

    path: Path
    platform: str  # "onnxruntime_onnx" | "tensorrt_plan"
    filename: str  # file name inside the version folder
    meta: ModelMeta
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch: int | None  # the largest batch the file accepts, None: unbounded
    notes: dict[str, str]
    external_files: tuple[str, ...] = ()  # ONNX external-data files, relative to the model's folder


def _onnx_dims(value_info: Any) -> tuple[tuple[int, ...], str]:
    t = value_info.type.tensor_type
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return dims, _ONNX_TO_NP.get(int(t.elem_type), f"onnx-type-{t.elem_type}")


def _read_onnx(path: Path) -> ModelInfo:
    import onnx

    from ...core.onnx_meta import read_onnx_meta

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file
        raise ModelFileError(
            f"{path}: not a readable ONNX file ({err})", "export it with `detnet-trt export`"
        ) from None
    meta = read_onnx_meta(path)
    specs: dict[str, TensorSpec] = {}
    for vi in list(model.graph.input) + list(model.graph.output):
        dims, dtype = _onnx_dims(vi)
        specs[vi.name] = TensorSpec(vi.name, dtype, dims[1:])
    missing = [n for n in (INPUT_NAME, *meta.output_names) if n not in specs]
    if missing:
        raise ModelFileError(
            f"{path}: graph lacks tensors {missing} of the detnet_trt contract",
            "export it with `detnet-trt export`",
        )
    for s in specs.values():
        if s.dtype not in _NP_TO_TRITON:
            raise ModelFileError(f"{path}: tensor '{s.name}' has unsupported type {s.dtype}")
    batch_dim = _onnx_dims(next(vi for vi in model.graph.input if vi.name == INPUT_NAME))[0][0]
    external = sorted(
        {e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
         for e in t.external_data if e.key == "location"}
    )
    for f in external:
        if Path(f).is_absolute() or ".." in Path(f).parts or not (path.parent / f).is_file():
            raise ModelFileError(f"{path}: external data file {f!r} is missing or outside the model's folder")
    return ModelInfo(
        path=path,
        platform="onnxruntime_onnx",
        filename="model.onnx",
        meta=meta,
        inputs=[specs[INPUT_NAME]],
        outputs=[specs[n] for n in meta.output_names],
        max_batch=None if batch_dim == -1 else batch_dim,
        notes={},
        external_files=tuple(external),
    )


def _read_engine(path: Path) -> ModelInfo:
    from ...core.sidecar import verify_engine  # pure JSON and a hash, no TensorRT

    info = verify_engine(path)  # the engine must be the one its sidecar describes
    meta = info.meta
    # The contract's dtypes and shapes (meta.topk is the exported K after clamping; in-graph NMS
    # pads to max_det): Triton checks them against the plan when it loads it.
    k = meta.topk if meta.nms == "host" else meta.max_det
    if meta.nms == "host":
        outputs = [TensorSpec("boxes", "float32", (k, 4)), TensorSpec("scores", "float32", (k,)),
                   TensorSpec("class_ids", "int32", (k,))]
    else:
        outputs = [TensorSpec("det_boxes", "float32", (k, 4)), TensorSpec("det_scores", "float32", (k,)),
                   TensorSpec("det_class_ids", "int32", (k,)), TensorSpec("num_dets", "int32", ())]
    return ModelInfo(
        path=path,
        platform="tensorrt_plan",
        filename="model.plan",
        meta=meta,
        inputs=[TensorSpec(INPUT_NAME, "uint8", tuple(meta.input_shape(1)[1:]))],
        outputs=outputs,
        max_batch=info.batch_range[2],
        notes={"tensorrt_version": info.tensorrt_version, "gpu": f"{info.gpu_name} (sm {info.compute_capability[0]}"
               f"{info.compute_capability[1]})"},
    )


def read_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Inputs, outputs and metadata of an exported ONNX file or a TensorRT engine (with sidecar)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file", "pass an .onnx file or an .engine built by `detnet-trt build`")
    if p.suffix.lower() == ".onnx":
        return _read_onnx(p)
    if p.suffix.lower() in ENGINE_SUFFIXES:
        return _read_engine(p)
    raise ModelFileError(
        f"{p}: Triton serves .onnx (onnxruntime_onnx) or .engine/.plan (tensorrt_plan) files, got {p.suffix!r}",
        "export the checkpoint first: `detnet-trt export MODEL.pt -o model.onnx`",
    )


# --- the vendored post-processing ----------------------------------------------------------------
def _module(name: str) -> Any:
    # importlib, not ``from ... import postprocess``: the package re-exports a function of that name.
    return importlib.import_module(f"detnet_trt.{name}")


# flat module of the vendored copy <- the package module it is made from
_VENDORED = {
    "errors.py": "core.errors",
    "meta.py": "core.meta",
    "config.py": "core.config",
    "nms.py": "runtime.nms",
    "postprocess.py": "runtime.postprocess",
    "protocol.py": "serving.triton.protocol",
}
# package-relative imports in those modules -> the flat copy's
_FLAT_IMPORTS = {
    "from ..core.errors import": "from .errors import",
    "from ...core.errors import": "from .errors import",
    "from ..core.meta import": "from .meta import",
    "from ..core.config import": "from .config import",
    "from .letterbox import": "from .preprocess import",
    "from .nms import": "from .nms import",
    "from .errors import": "from .errors import",
    "from .meta import": "from .meta import",
}


def _flat_source(module: str) -> str:
    lines = inspect.getsource(_module(module)).split("\n")
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith("from ."):
            head = stripped.split(" import ")[0] + " import"
            if head not in _FLAT_IMPORTS:
                raise RuntimeError(f"detnet_trt.{module}: {stripped!r} has no place in the vendored copy")
            lines[i] = line.replace(head, _FLAT_IMPORTS[head], 1)
    return "\n".join(lines)


def _pre_subset_source() -> str:
    """The pure-NumPy part of :mod:`detnet_trt.runtime.letterbox` the post-processing needs."""
    parts = [
        '"""Generated from detnet_trt.runtime.letterbox: the letterbox geometry (pure NumPy, no OpenCV)."""\n',
        "from __future__ import annotations\n\nfrom dataclasses import dataclass\n\nimport numpy as np\n",
        inspect.getsource(_module("runtime.letterbox").LetterboxInfo),
        inspect.getsource(_module("runtime.letterbox").letterbox_geometry),
    ]
    return "\n\n".join(parts)


def vendored_sources() -> dict[str, str]:
    """File name -> source of the ``detnet_trt_post`` package written beside ``model.py``: the
    package's post-processing modules, flattened into one folder (imports rewritten)."""
    return {
        "__init__.py": f'"""Generated by detnet-trt {__version__} export-triton: a copy of its post-processing."""\n',
        **{fname: _flat_source(module) for fname, module in _VENDORED.items()},
        "preprocess.py": _pre_subset_source(),
    }


_MODEL_PY = '''\
"""Triton Python backend: class-aware NMS and letterbox undo of detnet-trt ({version}).

Generated by `detnet-trt export-triton`. The post-processing code is the package's own, copied
into ./{vendor}/ (NumPy only), so this model needs no detnet_trt install in Triton's Python.
Parameters (config.pbtxt): conf, iou, max_det, input_size ("H,W").
"""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from {vendor}.postprocess import postprocess  # noqa: E402
from {vendor}.preprocess import letterbox_geometry  # noqa: E402
from {vendor}.protocol import ORIG_SIZE, pack_detections  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {{k: v["string_value"] for k, v in config.get("parameters", {{}}).items()}}
        self.conf = float(params["conf"])
        self.iou = float(params["iou"])
        self.max_det = int(params["max_det"])
        self.input_size = tuple(int(v) for v in params["input_size"].split(","))
        # inputs are "raw_" + the network's output names (boxes, scores, class_ids or det_*)
        self.input_names = [i["name"] for i in config["input"] if i["name"] != ORIG_SIZE]
        self.output_dtypes = {{
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }}

    def _infos(self, sizes):
        return [
            letterbox_geometry((int(h), int(w)), self.input_size) if h > 0 and w > 0 else None
            for h, w in sizes.reshape(-1, 2).tolist()
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = {{
                    n[len("{raw}"):]: pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                    for n in self.input_names
                }}
                sizes = pb_utils.get_input_tensor_by_name(request, ORIG_SIZE).as_numpy()
                dets = postprocess(outputs, self._infos(sizes), self.conf, self.iou, self.max_det)
                packed = pack_detections(dets, self.max_det)
                tensors = [
                    pb_utils.Tensor(name, packed[name].astype(self.output_dtypes[name], copy=False))
                    for name in self.output_dtypes
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as err:  # one bad request must not fail the others
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"postprocess: {{err}}"))
                )
        return responses
'''


# --- the configs -------------------------------------------------------------------------------
def _dynamic_batching(preferred: Sequence[int], queue_delay_us: int) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if preferred:
        d["preferred_batch_size"] = list(preferred)
    d["max_queue_delay_microseconds"] = int(queue_delay_us)
    return d


def _default_preferred(max_batch: int) -> list[int]:
    """Powers of two up to ``max_batch``, from 4 (small batches gain little on a GPU), plus the max."""
    sizes = [b for b in (4, 8, 16, 32, 64) if b < max_batch]
    return sizes + [max_batch] if max_batch > 1 else []


_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
INSTANCE_KINDS = ("gpu", "cpu")


@dataclass(frozen=True)
class TritonRepoOptions:
    """How ``export-triton`` lays out and batches the repository; each field is the flag of that name.

    ``name``: the ensemble clients call (``NAME_model``, ``NAME_postprocess`` beside it);
    ``max_batch``: ``max_batch_size`` of the three models; ``instances``, ``kind``: the network's
    instance group (``kind`` ``gpu``; ``cpu`` for ONNX on CPU-only hosts; TensorRT plans need
    ``gpu``); ``preferred_batch_sizes``: dynamic batching's preferred sizes (default 4, 8, ... up
    to ``max_batch``); ``queue_delay_us``: its max queue delay.
    """

    name: str = "detnet"
    max_batch: int = 8
    instances: int = 1
    kind: str = "gpu"
    preferred_batch_sizes: tuple[int, ...] | None = None
    queue_delay_us: int = 1000

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise InputError(f"--name: model name {self.name!r} may only contain letters, digits, '_', '.', '-'")
        if self.max_batch < 1:
            raise InputError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.instances < 1:
            raise InputError(f"--instances must be >= 1, got {self.instances}")
        if self.kind not in INSTANCE_KINDS:
            raise InputError(f"--kind: instance kind must be 'gpu' or 'cpu', got {self.kind!r}")
        if self.queue_delay_us < 0:
            raise InputError(f"--queue-delay-us must be >= 0, got {self.queue_delay_us}")
        check_ranges(("--max-batch", BATCH, self.max_batch), ("--instances", INSTANCES, self.instances),
                     ("--queue-delay-us", QUEUE_DELAY_US, self.queue_delay_us))
        if self.preferred_batch_sizes is not None:
            object.__setattr__(self, "preferred_batch_sizes", tuple(self.preferred_batch_sizes))
            bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch]
            if bad:
                raise InputError(f"--preferred-batch: preferred batch sizes {bad} are outside 1..{self.max_batch}")

    def preferred(self) -> list[int]:
        """The preferred batch sizes given, or the default ones for ``max_batch``."""
        if self.preferred_batch_sizes is not None:
            return list(self.preferred_batch_sizes)
        return _default_preferred(self.max_batch)


@dataclass
class RepositoryPlan:
    """The three configs (as nested dicts) and the names; returned by :func:`export_triton`."""

    repo: Path
    name: str
    model_name: str
    post_name: str
    configs: dict[str, dict[str, Any]]
    info: ModelInfo


def _orig_size_spec() -> TensorSpec:
    return TensorSpec(_proto_mod.ORIG_SIZE, "int32", (2,))


def _det_specs(max_det: int) -> list[TensorSpec]:
    """The detections the post-processing model and the ensemble return, padded to ``max_det``."""
    return [
        TensorSpec(_proto_mod.DET_BOXES, "float32", (max_det, 4)),
        TensorSpec(_proto_mod.DET_SCORES, "float32", (max_det,)),
        TensorSpec(_proto_mod.DET_CLASS_IDS, "int32", (max_det,)),
        TensorSpec(_proto_mod.NUM_DETS, "int32", (1,)),
    ]


def _input_size_param(meta: ModelMeta) -> str:
    return f"{meta.input_size[0]},{meta.input_size[1]}"


def _network_config(info: ModelInfo, model_name: str, options: TritonRepoOptions) -> dict[str, Any]:
    return {
        "name": model_name,
        "platform": info.platform,
        "max_batch_size": options.max_batch,
        "default_model_filename": info.filename,
        "input": [s.to_config() for s in info.inputs],
        "output": [s.to_config() for s in info.outputs],
        "dynamic_batching": _dynamic_batching(options.preferred(), options.queue_delay_us),
        "instance_group": [{"count": options.instances, "kind": _Enum(f"KIND_{options.kind.upper()}")}],
    }


def _postprocess_config(
    info: ModelInfo, post_name: str, options: TritonRepoOptions, post: PostprocessConfig
) -> dict[str, Any]:
    post_out = [s.to_config() for s in _det_specs(post.max_det)]
    post_out[2]["label_filename"] = "labels.txt"
    return {
        "name": post_name,
        "backend": "python",
        "max_batch_size": options.max_batch,
        # "raw_" + the network's output names: with in-graph NMS they would clash with det_* outputs
        "input": [TensorSpec(RAW_PREFIX + s.name, s.dtype, s.dims).to_config() for s in info.outputs]
        + [_orig_size_spec().to_config()],
        "output": post_out,
        "dynamic_batching": _dynamic_batching(options.preferred(), options.queue_delay_us),
        "instance_group": [{"count": options.instances, "kind": _Enum("KIND_CPU")}],
        "parameters": _parameters(
            {"conf": post.conf, "iou": post.iou, "max_det": post.max_det, "input_size": _input_size_param(info.meta)}
        ),
    }


def _ensemble_config(
    info: ModelInfo, name: str, model_name: str, post_name: str, options: TritonRepoOptions, post: PostprocessConfig
) -> dict[str, Any]:
    meta, orig, det_out = info.meta, _orig_size_spec(), _det_specs(post.max_det)
    raw = {s.name: f"_raw_{s.name}" for s in info.outputs}
    return {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": options.max_batch,
        "input": [info.inputs[0].to_config(), orig.to_config()],
        "output": [s.to_config() for s in det_out],
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": model_name,
                    "model_version": -1,
                    "input_map": [{"key": INPUT_NAME, "value": INPUT_NAME}],
                    "output_map": [{"key": k, "value": v} for k, v in raw.items()],
                },
                {
                    "model_name": post_name,
                    "model_version": -1,
                    "input_map": [{"key": RAW_PREFIX + k, "value": v} for k, v in raw.items()]
                    + [{"key": orig.name, "value": orig.name}],
                    "output_map": [{"key": s.name, "value": s.name} for s in det_out],
                },
            ]
        },
        "parameters": _parameters(
            {
                "class_names": json.dumps(meta.class_names),
                "layout": meta.layout,
                "input_size": _input_size_param(meta),
                "detnet_trt_version": __version__,
            }
        ),
    }


def _configs(info: ModelInfo, options: TritonRepoOptions, post: PostprocessConfig) -> RepositoryPlan:
    name = options.name
    model_name, post_name = f"{name}_model", f"{name}_postprocess"
    configs = {
        model_name: _network_config(info, model_name, options),
        post_name: _postprocess_config(info, post_name, options, post),
        name: _ensemble_config(info, name, model_name, post_name, options, post),
    }
    return RepositoryPlan(
        repo=Path(), name=name, model_name=model_name, post_name=post_name, configs=configs, info=info,
    )


_README = """\
# Triton model repository for `{name}` (generated by detnet-trt {version})

Source model: `{source}` ({platform}; model `{model}`, input {layout} {h}x{w} uint8 BGR,
{ncls} classes, precision {precision}{notes}).

| model | what |
| --- | --- |
| `{name}` | ensemble: the one clients call |
| `{model_name}` | the network ({platform}), dynamic batching up to {max_batch}, {instances}x KIND_{kind} |
| `{post_name}` | Python backend: score >= {conf}, class-aware NMS (IoU {iou}), <= {max_det} per image, un-letterbox |

## Run it

On a GPU host with Docker and the NVIDIA container toolkit, from this folder's parent:

    docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 \\
        -v "$PWD/{repo_name}:/models" nvcr.io/nvidia/tritonserver:<YY.MM>-py3 \\
        tritonserver --model-repository=/models

or, with `tritonserver` installed on the host: `tritonserver --model-repository=$PWD/{repo_name}`.
{engine_note}HTTP is on port 8000, gRPC (KServe v2) on 8001, Prometheus metrics on 8002 (`/metrics`).

## Request / response of `{name}`

- `images`: UINT8 `{image_dims}` per image: the original BGR image letterboxed (aspect-preserving
  resize, centred, padded with 114) to {h}x{w} exactly as `detnet_trt.runtime.letterbox.letterbox` does;
- `orig_size`: INT32 `[2]` per image: the original image's (height, width); boxes come back in its
  pixels (values <= 0 keep model-input pixels).
- `det_boxes` FP32 `[{max_det}, 4]` (x1, y1, x2, y2), `det_scores` FP32 `[{max_det}]`,
  `det_class_ids` INT32 `[{max_det}]` (-1 in padding rows), `num_dets` INT32 `[1]` valid rows.

Class names: `{post_name}/labels.txt` (also the `class_names` parameter of `{name}`'s config).
`detnet-trt client IMAGE... --url HOST:8000 --model {name}` letterboxes, sends and prints or saves
detections.

## Post-processing code

`{post_name}/1/{vendor}/` is a copy of detnet-trt's own post-processing modules. They need only
NumPy (which NVIDIA's tritonserver containers ship for the Python backend), so no detnet-trt install
is needed inside Triton. SHA-256 of the copy: `{vendor_sha}`.
Thresholds: the `conf`, `iou`, `max_det` parameters of `{post_name}/config.pbtxt`.
"""

_ENGINE_NOTE = """
A TensorRT plan only runs under the TensorRT version it was built with ({trt}) on the same GPU
architecture ({gpu}): pick the Triton container whose TensorRT is {trt} (NVIDIA's framework
support matrix lists it), or rebuild the engine inside that container.
"""


def _model_files(info: ModelInfo) -> list[tuple[Path, str]]:
    """(source file, name in the version folder): the model and an ONNX file's external-data files."""
    return [(info.path, info.filename), *((info.path.parent / f, f) for f in info.external_files)]


def _place_model_files(version_dir: Path, info: ModelInfo, link: bool = False) -> None:
    """The model file (and an ONNX file's external-data files) into the version folder: copies, so
    that nothing written into the repository later can change the user's original; hard links
    only with ``link`` (``--link``: saves the space of a large engine; copies where linking fails)."""
    for src, name in _model_files(info):
        (version_dir / name).parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src, version_dir / name)
                continue
            except OSError:
                pass
        shutil.copyfile(src, version_dir / name)


def _write_postprocess(post_dir: Path, meta: ModelMeta, vendor: dict[str, str]) -> str:
    """labels.txt, model.py and the vendored package of the post-processing model; returns the
    vendored copy's SHA-256."""
    atomic_write_text(post_dir / "labels.txt", "".join(f"{n}\n" for n in meta.class_names))
    model_py = _MODEL_PY.format(version=__version__, vendor=VENDOR_PACKAGE, raw=RAW_PREFIX)
    atomic_write_text(post_dir / "1" / "model.py", model_py)
    vdir = post_dir / "1" / VENDOR_PACKAGE
    vdir.mkdir()
    for fname, source in vendor.items():
        atomic_write_text(vdir / fname, source)
    return sha256_bytes("".join(f"{k}\n{v}" for k, v in sorted(vendor.items())).encode())


def _readme(plan: RepositoryPlan, options: TritonRepoOptions, post: PostprocessConfig, vendor_sha: str) -> str:
    info = plan.info
    meta = info.meta
    notes = "".join(f", {k} {v}" for k, v in info.notes.items())
    engine_note = (
        _ENGINE_NOTE.format(trt=info.notes["tensorrt_version"], gpu=info.notes["gpu"])
        if info.platform == "tensorrt_plan" else ""
    )
    h, w = meta.input_size
    return _README.format(
        name=plan.name, version=__version__, source=info.path.name, platform=info.platform, model=meta.model,
        layout=meta.layout, h=h, w=w, ncls=meta.num_classes, precision=meta.precision, notes=notes,
        model_name=plan.model_name, post_name=plan.post_name, max_batch=options.max_batch,
        instances=options.instances, kind=options.kind.upper(), iou=post.iou, conf=post.conf,
        max_det=post.max_det, repo_name=plan.repo.name, engine_note=engine_note,
        image_dims=list(info.inputs[0].dims), vendor=VENDOR_PACKAGE, vendor_sha=vendor_sha,
    )


def _write_tree(
    dest: Path, plan: RepositoryPlan, vendor: dict[str, str], options: TritonRepoOptions, post: PostprocessConfig,
    link: bool = False,
) -> None:
    for model, cfg in plan.configs.items():
        (dest / model / "1").mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest / model / "config.pbtxt", to_pbtxt(cfg))
    _place_model_files(dest / plan.model_name / "1", plan.info, link)
    vendor_sha = _write_postprocess(dest / plan.post_name, plan.info.meta, vendor)
    atomic_write_text(dest / "README.md", _readme(plan, options, post, vendor_sha))
    _write_marker(dest, plan)


# --- what --force may replace ----------------------------------------------------------------------
MARKER_NAME = ".detnet-trt-repository.json"
MARKER_FORMAT = "detnet-trt-triton-repository"


def _tree_files(root: Path) -> set[str]:
    """Files below ``root`` (POSIX, relative), without the ``__pycache__`` a Python backend writes."""
    return {
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if not p.is_dir() and "__pycache__" not in p.relative_to(root).parts
    }


def _write_marker(dest: Path, plan: RepositoryPlan) -> None:
    """``MARKER_NAME``: the format and every file this export wrote, so that ``--force`` later
    replaces only a repository made of them."""
    doc = {"format": MARKER_FORMAT, "version": 1, "detnet_trt": __version__, "name": plan.name,
           "files": sorted(_tree_files(dest))}
    atomic_write_text(dest / MARKER_NAME, json.dumps(doc, indent=1) + "\n")


def _check_replaceable(dest: Path, shown: str) -> None:
    """Refuse to replace ``dest`` unless it is a repository this package wrote and holds nothing else."""
    fix = "remove it yourself, or choose a new --repo folder"
    try:
        doc = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT or not isinstance(doc.get("files"), list):
        raise OutputError(f"--repo {shown} was not written by detnet-trt export-triton (no {MARKER_NAME}); "
                          "--force replaces only such a repository", fix)
    extra = sorted(_tree_files(dest) - set(doc["files"]) - {MARKER_NAME})
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise OutputError(f"--repo {shown} holds files detnet-trt did not write ({', '.join(extra[:3])}{more}); "
                          "--force replaces only what it wrote", "move those files out, or choose a new --repo folder")


def _check_repo_path(dest: Path, shown: str, info: ModelInfo, force: bool) -> None:
    """``dest`` (absolute, not resolved): not ``.``/``..``/``/``, not holding the model, new or
    replaceable (``force``), its parent writable with room for the model files."""
    real, cwd = Path(os.path.realpath(dest)), Path(os.path.realpath(os.getcwd()))
    if real == cwd or real in cwd.parents or real.parent == real:
        raise OutputError(f"--repo {shown} is the current folder, one above it or the root; "
                          "export-triton writes a folder of its own", "name a new folder, e.g. --repo triton_repo")
    check_not_input(dest, [src for src, _ in _model_files(info)])
    if dest.is_symlink():
        raise OutputError(f"--repo {shown} is a symbolic link", "name the folder itself, or a new folder")
    if dest.exists() and not dest.is_dir():
        raise OutputExistsError(f"{shown} exists and is not a folder", "choose another --repo")
    if dest.exists() and not force:
        raise OutputExistsError(f"{shown} already exists", "pass --force to replace the repository")
    if dest.exists():
        _check_replaceable(dest, shown)
    size = sum(src.stat().st_size for src, _ in _model_files(info)) + (1 << 20)
    check_output_dir(dest.parent, size=size)


def _check_model_fits(info: ModelInfo, options: TritonRepoOptions) -> None:
    if info.platform == "tensorrt_plan" and options.kind != "gpu":
        raise InputError("a TensorRT engine runs only on a GPU instance", "drop --kind cpu, or export the ONNX file")
    if info.max_batch is not None and options.max_batch > info.max_batch:
        raise InputError(
            f"--max-batch {options.max_batch} exceeds the largest batch {info.max_batch} that {info.path.name} accepts",
            f"pass --max-batch {info.max_batch} or less, or rebuild the engine with a larger batch",
        )


def export_triton(
    model: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    options: TritonRepoOptions = TritonRepoOptions(),
    post: PostprocessConfig = PostprocessConfig(),
    force: bool = False,
    link: bool = False,
) -> RepositoryPlan:
    """Write a Triton model repository serving ``model`` (.onnx or .engine) as ensemble ``options.name``.

    ``options``: names, batching and instances (:class:`TritonRepoOptions`); ``post``: the
    thresholds of the post-processing model. The repository is built in a temporary folder
    beside ``repo`` and renamed into place, so an interrupted export leaves no half-written
    repository. An existing ``repo`` is replaced only with ``force``, and only when it is a
    repository this function wrote (its ``.detnet-trt-repository.json`` lists every file) holding
    nothing else; ``.``, ``..``, ``/`` and a folder holding the model are refused. The model file is
    copied into the repository (hard-linked with ``link``).
    """
    info = read_model(model)
    _check_model_fits(info, options)
    dest = Path(os.path.abspath(repo))
    _check_repo_path(dest, os.fspath(repo), info, force)
    plan = _configs(info, options, post)
    plan.repo = Path(repo)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        os.chmod(tmp, dir_mode())  # mkdtemp makes 0700: the folder a tritonserver container must read
    except OSError as err:
        raise output_error(dest.parent, err, "cannot write in folder") from None
    try:
        _write_tree(tmp, plan, vendored_sources(), options, post, link)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            try:
                os.replace(tmp, dest)
            except BaseException:
                os.replace(old, dest)  # the previous repository back in place
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):  # a copy or rename failed: full disk, I/O error, ...
            raise output_error(os.fspath(repo), err) from err
        raise
    return plan


__all__ = [
    "ModelInfo", "RepositoryPlan", "TensorSpec", "TritonRepoOptions", "export_triton", "read_model", "to_pbtxt",
    "vendored_sources",
]
