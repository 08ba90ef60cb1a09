"""The batcher of a multi-stream run: the newest frame of each live stream, gathered into one batch.

Like DeepStream's ``nvstreammux`` with its batched-push timeout: :meth:`Batcher.gather` waits for
the first frame of any stream, then at most ``timeout`` seconds more for the other streams that
are still running and connected, and returns at most one frame per stream, in stream order.
Every stream that has a frame ready when a batch closes is in it, so a faster stream cannot
starve a slower one: each batch holds at most one frame of the fast stream, and the slow
stream's frame goes into the first batch that closes after it arrived. A stream that is
reconnecting is not waited for; a stream that ended (or reached ``max_frames``) is left out.

The sources are the threaded ones (:class:`~.sources.LiveSource`,
:class:`~.sources.ReadAheadSource`): they call :meth:`Batcher.wake` from their capture threads
when a frame arrives, so the batcher never polls on a timer while frames come in.

:func:`infer_batch` runs a gathered batch through the backend in as few calls as its maximum
batch allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np

from ...runtime.backends.base import Backend
from .sources import Frame, FrameSource, StopLike

_POLL = 0.05  # seconds between checks of the stop flag while nothing happens


class Batcher:
    """Gathers one frame per stream from ``sources`` (see the module docstring).

    ``timeout``: seconds to wait for the other streams after the first frame of a batch arrived
    (0: take what is ready at that moment). ``max_frames``: frames taken per stream at most
    (``None``: no limit). ``host_s`` accumulates the time spent in :meth:`gather` outside waits
    (the batcher's own host cost); ``taken`` counts frames per stream.
    """

    def __init__(self, sources: Sequence[FrameSource], timeout: float, max_frames: int | None = None) -> None:
        self.sources = list(sources)
        self.timeout = max(0.0, float(timeout))
        self.max_frames = max_frames
        self.taken = [0] * len(self.sources)
        self.host_s = 0.0
        self._told = [False] * len(self.sources)  # finished streams reported by newly_finished()
        self._cond = threading.Condition()
        for s in self.sources:
            s.on_frame = self.wake

    def wake(self) -> None:
        """A source has a new frame (or ended): re-check. Called from capture threads."""
        with self._cond:
            self._cond.notify_all()

    def running(self, i: int) -> bool:
        """Stream ``i`` may still deliver frames (not ended, not at ``max_frames``)."""
        if self.max_frames is not None and self.taken[i] >= self.max_frames:
            return False
        return not self.sources[i].ended

    def finished(self) -> bool:
        return not any(self.running(i) for i in range(len(self.sources)))

    def newly_finished(self) -> list[int]:
        """The streams that finished (ended, or reached ``max_frames``) since the last call. Called
        after :meth:`gather`: every frame of such a stream is in that batch or an earlier one (a
        source ends only once its last frame was taken)."""
        out = [i for i, told in enumerate(self._told) if not told and not self.running(i)]
        for i in out:
            self._told[i] = True
        return out

    def _collect(self, got: dict[int, Frame]) -> list[int]:
        """Take the ready frames of streams not in the batch yet; returns the streams still awaited."""
        waiting = []
        for i, src in enumerate(self.sources):
            if i in got or not self.running(i):
                continue
            frame = src.poll()
            if frame is not None:
                got[i] = frame
                self.taken[i] += 1
            elif src.connected:
                waiting.append(i)
        return waiting

    def gather(self, stop: StopLike) -> list[tuple[int, Frame]] | None:
        """The next batch: ``[(stream index, frame), ...]`` in stream order, at least one frame;
        ``None`` once every stream has finished or ``stop`` is set."""
        got: dict[int, Frame] = {}
        deadline: float | None = None
        t_in = time.perf_counter()
        waited = 0.0
        with self._cond:
            while True:
                waiting = self._collect(got)
                now = time.perf_counter()
                if stop.is_set():
                    break
                if got:
                    deadline = deadline if deadline is not None else now + self.timeout
                    if not waiting or now >= deadline:
                        break
                elif self.finished():
                    break
                wait = _POLL if deadline is None else min(_POLL, deadline - now)
                self._cond.wait(wait)
                waited += time.perf_counter() - now
        self.host_s += time.perf_counter() - t_in - waited
        if stop.is_set() or not got:
            return None
        return sorted(got.items())


def infer_batch(backend: Backend, batch: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
    """Run ``batch`` through ``backend`` in chunks of its maximum batch (``backend.max_batch``;
    ``None``: any size, one call); returns the outputs of all images in order and the number of
    backend calls."""
    n = batch.shape[0]
    mb = backend.max_batch or n
    if n <= mb:
        return backend.infer(batch), 1
    parts: list[Mapping[str, np.ndarray]] = [backend.infer(batch[i : i + mb]) for i in range(0, n, mb)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, len(parts)


__all__ = ["Batcher", "infer_batch"]
