"""``detnet-trt export-triton``: a Triton model repository (network + NMS + ensemble)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..core.limits import BATCH, INSTANCES, QUEUE_DELAY_US
from ._options import add_postprocess_args, number, number_list, postprocess_config

if TYPE_CHECKING:
    from ..serving.triton.repository import TritonRepoOptions


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-triton",
        help="write a Triton model repository for a stock tritonserver (.engine or .onnx)",
        description="Writes DIR with NAME_model (tensorrt_plan for .engine/.plan, onnxruntime_onnx for .onnx), "
        "NAME_postprocess (Python backend: the package's NMS and letterbox undo) and the ensemble NAME that "
        "clients call with letterboxed uint8 images + original sizes. DIR/README.md has the tritonserver command.",
    )
    p.add_argument("model", help="TensorRT engine (.engine/.plan, with its .json sidecar) or exported ONNX (.onnx)")
    p.add_argument("--repo", required=True, help="repository folder to write")
    add_repo_args(p)
    add_postprocess_args(p)
    p.add_argument("--force", action="store_true",
                   help="replace an existing repository that export-triton wrote (a folder holding other files is refused)")
    p.add_argument("--link", action="store_true",
                   help="hard-link the model file into the repository instead of copying it (saves space; "
                        "the repository's model file is then the original)")
    p.set_defaults(func=run)
    return p


def add_repo_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`~detnet_trt.serving.triton.repository.TritonRepoOptions` (see :func:`repo_options`)."""
    p.add_argument("--name", default="detnet", help="ensemble name clients call (default detnet)")
    p.add_argument("--max-batch", type=number(BATCH), default=8, help="max_batch_size of the models (default 8)")
    p.add_argument("--preferred-batch", type=number_list(BATCH), default=None,
                   help="dynamic batching preferred sizes, e.g. 4,8 (default: 4, 8, ... up to --max-batch)")
    p.add_argument("--queue-delay-us", type=number(QUEUE_DELAY_US), default=1000,
                   help="dynamic batching max queue delay in microseconds (default 1000)")
    p.add_argument("--instances", type=number(INSTANCES), default=1, help="model instances (instance_group count, default 1)")
    p.add_argument("--kind", choices=("gpu", "cpu"), default="gpu",
                   help="instance kind of the network (default gpu; cpu for ONNX on a CPU-only host)")


def repo_options(args: argparse.Namespace) -> TritonRepoOptions:
    """The :class:`~detnet_trt.serving.triton.repository.TritonRepoOptions` of :func:`add_repo_args`' flags."""
    from ..serving.triton.repository import TritonRepoOptions

    return TritonRepoOptions(
        name=args.name, max_batch=args.max_batch, instances=args.instances, kind=args.kind,
        preferred_batch_sizes=None if args.preferred_batch is None else tuple(args.preferred_batch),
        queue_delay_us=args.queue_delay_us,
    )


def run(args: argparse.Namespace) -> int:
    from ..serving.triton.repository import export_triton

    plan = export_triton(
        args.model, args.repo, options=repo_options(args), post=postprocess_config(args), force=args.force,
        link=args.link,
    )
    print(f"wrote {plan.repo}: {', '.join(plan.configs)} ({plan.info.platform})")
    print(f"run: tritonserver --model-repository={plan.repo.resolve()}  (see {plan.repo / 'README.md'})")
    return 0
