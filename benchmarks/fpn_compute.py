"""GMACs of the two-stage DetNet-59 FPN (detnet59_fpn) beside the FCOS-style dense detector and the paper.

Usage::

    .venv/bin/python benchmarks/fpn_compute.py [--proposals 300] [--classes 80] [--out benchmarks/results]

Counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add, halved:
one multiply-add = one MAC, as the paper counts), convolutions and fully connected layers only
(RoIAlign, NMS, decoding are not MACs). The two-stage detector is counted in its three stages:
backbone + FPN (P2-P6), RPN head (3x3 conv + two 1x1 on all five levels), RoI head (the 14 x 14
conv and the 1x1 conv to 1024, class and box layers) for ``--proposals`` RoIs, which does not
depend on the input size. The dense detector is ``detnet59`` (P3-P6 head, the package default).

Sizes: 512x512, 600x1000 (the test scale of Faster R-CNN papers), 800x1216. The two-stage stages
are run on a float input of exactly that size (DetNet_pytorch's network takes any size; the
package's model takes multiples of 16, 608x1008 for the nearest to 600x1000); the dense detector
needs multiples of 16, so its 600x1000 row is counted at 608x1008 (marked).

The paper (Li et al. 2018, table 2) gives only the backbone: 4.8 GFLOPs (multiply-adds) for
DetNet-59 classification at 224x224; no detector FLOPs. That figure scaled by the pixel count is
listed as a rough reference for the backbone share, labelled as scaled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, write_results

from detnet_trt.models import DetNetFPNConfig, DetNetFPNDetector, build_model

SIZES = ((512, 512), (600, 1000), (800, 1216))
PAPER_BACKBONE_GMACS_224 = 4.8


def _gmacs(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9


def two_stage(size: tuple[int, int], proposals: int, classes: int) -> dict:
    model = DetNetFPNDetector(DetNetFPNConfig(num_classes=classes, topk=proposals)).eval()
    x = torch.zeros(1, 3, *size)
    feats: list[torch.Tensor] = []
    backbone = _gmacs(lambda: feats.extend(model.neck(model.backbone(x))))
    rpn = _gmacs(lambda: model.rpn(feats))
    pool = model.config.pool_size
    head = _gmacs(lambda: model.roi_head(torch.zeros(proposals, model.config.fpn_channels, pool, pool)))
    return {"backbone_fpn": round(backbone, 2), "rpn": round(rpn, 2), "roi_head": round(head, 2),
            "total": round(backbone + rpn + head, 2)}


def dense(size: tuple[int, int], classes: int) -> dict:
    h, w = (-(-size[0] // 16) * 16, -(-size[1] // 16) * 16)
    model = build_model("detnet59", num_classes=classes, input_size=(h, w)).eval()
    x = torch.zeros(1, 3, h, w, dtype=torch.uint8)
    return {"counted_at": [h, w], "total": round(_gmacs(lambda: model(x)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proposals", type=int, default=300)
    ap.add_argument("--classes", type=int, default=80, help="foreground classes (COCO 80)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    rows = []
    for size in SIZES:
        rows.append({
            "input": list(size),
            "two_stage": two_stage(size, args.proposals, args.classes),
            "dense_fcos_style": dense(size, args.classes),
            "paper_backbone_scaled": round(PAPER_BACKBONE_GMACS_224 * size[0] * size[1] / 224**2, 1),
        })
        print(rows[-1], flush=True)
    doc = {"machine": machine(), "proposals": args.proposals, "classes": args.classes, "results": rows}
    md = [
        "# GMACs: two-stage DetNet-59 FPN vs the FCOS-style detector (batch 1)",
        "",
        f"`{doc['machine']['command']}` on {doc['machine']['cpu_model']} ({doc['machine']['date']}); counts do not "
        "depend on the machine. FlopCounterMode, convolutions + fully connected layers, 1 MAC = 1 multiply-add. "
        f"{args.classes} classes, {args.proposals} RoIs for the RoI head.",
        "",
        "| input | two-stage: backbone + FPN | RPN head | RoI head | **two-stage total** | FCOS-style detnet59 (P3-P6) | paper: backbone 4.8 G at 224, scaled by pixels |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, d = r["two_stage"], r["dense_fcos_style"]
        at = "" if d["counted_at"] == r["input"] else f" (at {d['counted_at'][0]}x{d['counted_at'][1]})"
        md.append(f"| {r['input'][0]}x{r['input'][1]} | {t['backbone_fpn']} | {t['rpn']} | {t['roi_head']} | "
                  f"**{t['total']}** | {d['total']}{at} | {r['paper_backbone_scaled']} (backbone only) |")
    md += ["", "The RoI head's cost is fixed by the RoI count: its first layer is a 14 x 14 convolution "
           "from 256 to 1024 channels (DetNet_pytorch's RCNN_top with POOLING_SIZE 14), 51 M MACs per RoI."]
    write_results(args.out, "fpn_compute", doc, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
