"""The allowed range of every numeric option, in one place.

The command line checks them where it parses (``detnet_trt/cli/_options.py`` turns each
:class:`Range` into an argparse ``type=``) and the options objects check the same ranges when they
are made (:meth:`Range.check`), so a value refused on the command line is refused through the API
too, in the same words. Every range is closed above by a finite bound: a value past it is a typo
or would allocate or write without end (``infer --batch 100000`` asked for a buffer of 100,000
images); the bound's reason is part of the message.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .config import MAX_DETECTIONS
from .errors import InputError


@dataclass(frozen=True)
class Range:
    """Numbers from ``lo`` to ``hi`` (each end included unless ``lo_open`` / ``hi_open``);
    ``integer``: whole numbers only; ``why``: the reason for ``hi``, shown when a value is above it."""

    lo: float
    hi: float
    integer: bool = True
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"a Range needs finite lo < hi, got {self.lo}, {self.hi}")

    def describe(self) -> str:
        """``"an integer in 1..256"``, ``"a number in (0, 100]"``."""
        if self.integer:
            return f"an integer in {int(self.lo)}..{int(self.hi)}"
        return f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def problem(self, value: object, text: str | None = None) -> str | None:
        """What is wrong with ``value`` (``"expected an integer in 1..256, got 0"``; ``text``: the
        value as the user typed it), or ``None``."""
        expected = f"expected {self.describe()}, got {text if text is not None else repr(value)}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return expected
        v = float(value)
        if not math.isfinite(v) or (self.integer and not v.is_integer()):
            return expected
        if v < self.lo or (self.lo_open and v == self.lo):
            return expected
        if v > self.hi or (self.hi_open and v == self.hi):
            return f"{expected} ({self.why})" if self.why else expected
        return None

    def check(self, flag: str, value: object) -> None:
        """Raise :class:`InputError` naming ``flag`` when ``value`` is out of range (``None`` passes:
        the option was not given)."""
        if value is None:
            return
        problem = self.problem(value)
        if problem is not None:
            raise InputError(f"{flag}: {problem}")


def check_ranges(*checks: tuple[str, Range, object]) -> None:
    """:meth:`Range.check` of each ``(flag, range, value)`` in turn (an options object's
    ``__post_init__``: the first bad value raises, naming its flag)."""
    for flag, range_, value in checks:
        range_.check(flag, value)


#: Images per inference call (infer, eval, compare, bench, serve, export-triton, build's profile).
MAX_BATCH = 256
BATCH = Range(1, MAX_BATCH, why=f"a batch's buffers are allocated at once; {MAX_BATCH} images of 640x640 "
              "already take 300 MiB of input alone")
#: The global training batch (split over the processes of a torchrun).
TRAIN_BATCH = Range(1, 4096, why="the global batch is split over the processes; 4096 is far past any GPU's memory")
#: Counts of images, frames or runs (--limit, --num, --val-images, --max-frames, --iterations, ...).
COUNT = Range(1, 10**9, why="a billion is beyond any dataset or run")
#: Counts that may be 0 (``calib-set --min-images 0``: no minimum).
COUNT_OR_ZERO = Range(0, 10**9, why="a billion is beyond any dataset or run")
#: Images written by ``synth`` (every one is a file).
SYNTH_IMAGES = Range(2, 1_000_000, why="every image is a file; a million is COCO eight times over")
#: Objects per synthetic scene.
SYNTH_OBJECTS = Range(1, 100, why="more than 100 shapes do not fit a scene")
#: A side of an image, frame or capture, in pixels.
MAX_SIDE = 8192
SIDE = Range(1, MAX_SIDE, why=f"{MAX_SIDE} pixels a side is already 200 MB a frame")
#: A side of a synthetic image or a training input (the detector's stride needs 32 at least).
MODEL_SIDE = Range(32, MAX_SIDE, why=f"{MAX_SIDE} pixels a side is already 200 MB a frame")
#: Random seeds (NumPy takes 32-bit seeds everywhere the package uses one).
SEED = Range(0, 2**32 - 1, why="seeds are 32-bit")
#: A probability or score threshold.
PROBABILITY = Range(0, 1, integer=False)
#: An IoU threshold (0 would suppress everything).
IOU = Range(0, 1, integer=False, lo_open=True)
#: A fraction strictly between 0 and 1 (``synth --val-fraction``).
FRACTION = Range(0, 1, integer=False, lo_open=True, hi_open=True)
#: An AP difference that may be negative (``--max-ap-drop -0.5``: INT8 must gain half a point).
AP_DIFFERENCE = Range(-100, 100, integer=False)
#: A percentile of a histogram.
PERCENTILE = Range(0, 100, integer=False, lo_open=True)
#: Detections kept per image.
MAX_DET = Range(1, MAX_DETECTIONS, why="COCO scoring keeps 100; 10,000 is more than any image holds")
#: Candidates per image before NMS (TensorRT's TopK allows K <= 3840).
TOPK = Range(1, 3840, why="TensorRT's TopK allows K <= 3840")
#: RPN proposals kept per image (two-stage detectors; DetNet's test setting keeps 300).
PROPOSALS = Range(1, 10_000, why="10,000 proposals per image is past any detector's test setting")
#: TCP ports.
PORT = Range(1, 65535, why="TCP ports end at 65535")
#: Data-loading processes (0: load in the main process).
WORKERS = Range(0, 256, why="256 processes per rank is past any machine's cores")
#: ONNX Runtime intra-op threads.
THREADS = Range(1, 1024, why="1024 threads is past any machine's cores")
#: Seconds of a timed run or a recording (a day at most).
SECONDS = Range(0, 86_400, integer=False, lo_open=True, why="a day is the longest run")
#: Seconds that may be 0 (warm-up, log interval: 0 is none / never).
SECONDS_OR_ZERO = Range(0, 86_400, integer=False, why="a day is the longest wait")
#: Frames per second.
FPS = Range(0, 1000, integer=False, lo_open=True, why="1000 frames per second is past any camera")
#: A camera's capture frame rate (whole frames per second).
CAPTURE_FPS = Range(1, 1000, why="1000 frames per second is past any camera")
#: How long a camera batch waits for the other streams (``camera --batch-timeout-ms``).
BATCH_TIMEOUT_MS = Range(0, 10_000, integer=False, why="a batch that waits more than 10 s for a stream is a stalled run")
#: Dynamic batching's queue delay, in microseconds (10 s at most).
QUEUE_DELAY_US = Range(0, 10_000_000, why="a queue delay of more than 10 s times every client out")
#: Model instances (Triton instance_group count).
INSTANCES = Range(1, 64, why="64 copies of the model is past any GPU's memory")
#: TensorRT builder workspace, MiB.
WORKSPACE_MIB = Range(16, 1 << 20, why="1 TiB is past any GPU's memory")
#: A DLA core index (Jetson Orin has 2).
DLA_CORE = Range(0, 15, why="no device has more than a few DLA cores")
#: ONNX opsets the exporter can write.
OPSET = Range(17, 28, why="opset 28 is the newest the installed ONNX defines")
#: Training epochs.
EPOCHS = Range(1, 100_000, why="a run of more than 100,000 epochs is a typo")
#: Epochs that may be 0 or fractional (warm-up) or 0 for "never" (val every N).
EPOCHS_OR_ZERO = Range(0, 100_000, why="a run of more than 100,000 epochs is a typo")
WARMUP_EPOCHS = Range(0, 100_000, integer=False, why="a run of more than 100,000 epochs is a typo")
#: Peak learning rate.
LEARNING_RATE = Range(0, 10, integer=False, lo_open=True, why="a learning rate above 10 diverges at once")
#: Weight decay.
WEIGHT_DECAY = Range(0, 1, integer=False)


#: Frames a lost track is kept before it ends (camera --track-buffer).
TRACK_FRAMES = Range(0, 100_000, why="100,000 frames is an hour of 30 FPS video: a track lost that long has left")
#: Messages an event sink holds while its broker is away (camera --mqtt-queue).
MESSAGES = Range(1, 1_000_000, why="a million messages is hours of one camera's frames; older ones are stale")

__all__ = [
    "AP_DIFFERENCE", "BATCH", "CAPTURE_FPS", "COUNT", "COUNT_OR_ZERO", "DLA_CORE", "EPOCHS", "EPOCHS_OR_ZERO", "FPS", "FRACTION", "INSTANCES", "IOU",
    "LEARNING_RATE", "MAX_BATCH", "MAX_DET", "MAX_SIDE", "MESSAGES", "MODEL_SIDE", "OPSET", "PERCENTILE", "PORT", "PROPOSALS", "PROBABILITY",
    "QUEUE_DELAY_US", "Range", "SECONDS", "SECONDS_OR_ZERO", "SEED", "SIDE", "SYNTH_IMAGES", "SYNTH_OBJECTS",
    "THREADS", "TOPK", "TRACK_FRAMES", "TRAIN_BATCH", "WARMUP_EPOCHS", "WEIGHT_DECAY", "WORKERS", "WORKSPACE_MIB", "check_ranges",
]
