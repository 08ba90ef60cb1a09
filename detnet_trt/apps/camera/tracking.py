"""Multi-object tracking for the camera loop (``--track``): ByteTrack, per stream, every stream of a batch in one step.

ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box",
ECCV 2022) keeps a constant-velocity Kalman filter per track and associates in two stages: first
the confirmed and lost tracks with the high-score detections, then the tracks still unmatched with
the low-score ones (an occluded object's detection score drops, its box is still right), each
stage an IoU cost solved as a linear assignment (SciPy's ``linear_sum_assignment``). A new object
becomes a track at its first high-score detection and is confirmed (gets its id) when it is matched
again on the next frame; a track that finds no detection is kept as *lost* for ``buffer`` frames
(the filter keeps predicting it, so it is found again after a short occlusion with the same id)
and then ends.

Why not a library: the maintained ByteTrack packages do not fit the dependencies (Roboflow's
``trackers`` needs NumPy >= 2 and ``supervision``, which pulls PyAV and requests; ``supervision``
itself no longer ships a tracker; BoxMOT pulls PyTorch and torchvision). See docs/camera.md.

:class:`Tracker` ``.update(detections, stream)`` -> :class:`TrackUpdate`: the detections to report
(every detection at or above the high threshold, plus the low-score ones that continued a track),
the track id of each (``-1``: not in a confirmed track yet) and the tracks that started and ended.
``.update_many([(stream, detections), ...])``: one frame of each of several streams in one step,
with the results of one update per stream (a stream's tracks only meet its own detections).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...core.config import PostprocessConfig
from ...core.limits import PROBABILITY, TRACK_FRAMES
from ...runtime.postprocess import Detections

_STD_POS = 1.0 / 20  # Kalman noise: position std as a fraction of the box size (DeepSORT / ByteTrack weights)
_STD_VEL = 1.0 / 160  # velocity std, same
_DUPLICATE_IOU = 0.85  # a tracked and a lost track overlapping this much are one object: the younger goes
_NO_MATCH = 1e6  # assignment cost of a gated-out pair


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings.

    ``high``: detections scoring at least this are *high* (first association; only they start
    tracks); ``None``: the detector's ``--conf``. ``low``: the lowest score used at all (second
    association; the detector then keeps candidates down to ``min(conf, low)``). ``match_iou``,
    ``low_iou``, ``new_iou``: the least overlap (IoU, times the score when ``fuse_score``) for a
    match in the first, second and unconfirmed-track stage (ByteTrack's 1 - 0.8, 1 - 0.5, 1 - 0.7).
    ``buffer``: processed frames a lost track is kept before it ends. ``class_aware``: match only
    detections of the track's class (ByteTrack itself ignores classes).
    """

    high: float | None = None
    low: float = 0.1
    match_iou: float = 0.2
    low_iou: float = 0.5
    new_iou: float = 0.3
    buffer: int = 30
    fuse_score: bool = True
    class_aware: bool = False

    def __post_init__(self) -> None:
        PROBABILITY.check("--track-low", self.low)
        PROBABILITY.check("tracker high threshold", self.high)
        for name in ("match_iou", "low_iou", "new_iou"):
            PROBABILITY.check(f"tracker {name}", getattr(self, name))
        TRACK_FRAMES.check("--track-buffer", self.buffer)

    def resolve(self, post: PostprocessConfig) -> tuple[TrackerConfig, PostprocessConfig]:
        """With the detector's thresholds ``post``: this config with ``high`` set (``--conf`` when
        unset) and the detector's config lowered to keep the low-score candidates too."""
        high = post.conf if self.high is None else self.high
        return replace(self, high=high), replace(post, conf=min(post.conf, high, self.low))


@dataclass(frozen=True)
class TrackEvent:
    """A track that ``kind`` "start"ed (was confirmed) or "end"ed (lost for longer than the buffer,
    or the end of the stream). ``box`` / ``score`` / ``class_id``: its last detection;
    ``first_frame`` / ``last_frame``: the tracker's frames (0-based, one per update) it was first and
    last seen in."""

    kind: str
    track_id: int
    class_id: int
    box: tuple[float, float, float, float]
    score: float
    first_frame: int
    last_frame: int

    def to_dict(self, class_names: Any = None) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.kind, "track_id": self.track_id, "class_id": self.class_id}
        if class_names is not None:
            c = self.class_id
            d["class_name"] = class_names[c] if 0 <= c < len(class_names) else str(c)
        d.update(box=[round(v, 2) for v in self.box], score=round(self.score, 5),
                 first_frame=self.first_frame, last_frame=self.last_frame)
        return d


@dataclass(frozen=True)
class TrackUpdate:
    """One frame through the tracker: ``detections`` to report, ``track_ids`` ``(M,)`` int64 aligned
    with them (``-1``: not in a confirmed track yet), and the ``events`` of this frame."""

    detections: Detections
    track_ids: np.ndarray
    events: tuple[TrackEvent, ...] = ()

    def ids_list(self) -> list[int | None]:
        """The track ids as JSON values (``None`` for ``-1``)."""
        return [None if i < 0 else int(i) for i in self.track_ids.tolist()]


def xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    wh = b[..., 2:4] - b[..., 0:2]
    return np.concatenate([b[..., 0:2] + wh / 2, wh], axis=-1)


def cxcywh_to_xyxy(z: np.ndarray) -> np.ndarray:
    half = z[..., 2:4] / 2
    return np.concatenate([z[..., 0:2] - half, z[..., 0:2] + half], axis=-1)


def _xyxy(z: np.ndarray) -> np.ndarray:
    """:func:`cxcywh_to_xyxy` of ``(4, N)`` boxes, one per column."""
    half = z[2:4] / 2
    return np.concatenate([z[0:2] - half, z[0:2] + half])


def _cxcywh(b: np.ndarray) -> np.ndarray:
    """:func:`xyxy_to_cxcywh` of ``(4, N)`` boxes, one per column."""
    wh = b[2:4] - b[0:2]
    return np.concatenate([b[0:2] + wh / 2, wh])


class KalmanBoxFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, w, h)`` boxes; state ``(cx, cy, w, h, vx, vy,
    vw, vh)`` (one frame per step). Noise scales with the box size, as in DeepSORT and ByteTrack.
    Every method works on ``N`` tracks at once, one per column (``means`` ``(8, N)``, boxes
    ``(4, N)``), in a fixed number of NumPy calls on whole rows (contiguous: NumPy is several times
    slower on the strided columns of an array with a track per row).

    The motion ``F = [[I, I], [0, I]]``, the process noise ``Q``, the measurement ``H = [I, 0]``
    and its noise ``R`` never couple two coordinates, and a track's first covariance is diagonal:
    each coordinate with its velocity is a filter of its own, and the covariance ``P`` stays zero
    but for, per coordinate ``j``, the position variance ``P[j, j]``, the position-velocity term
    ``P[j, j+4] = P[j+4, j]`` and the velocity variance ``P[j+4, j+4]``. The filter keeps just
    those, as ``covs`` ``(3, 4, N)`` (``[0]``, ``[1]``, ``[2]``); the matrix equations reduce to
    sums and products of them (no matrix product, no LAPACK call, whose start-up cost more than the
    whole update for 4 x 4). :meth:`full` gives the ``(N, 8, 8)`` matrices: the tests check every
    step against the textbook matrix equations on them.
    """

    @staticmethod
    def full(covs: np.ndarray) -> np.ndarray:
        """The ``(N, 8, 8)`` covariance matrices of ``(3, 4, N)`` covariances."""
        out = np.zeros((covs.shape[-1], 8, 8))
        j = np.arange(4)
        out[:, j, j], out[:, j, j + 4], out[:, j + 4, j], out[:, j + 4, j + 4] = covs[0].T, covs[1].T, covs[1].T, covs[2].T
        return out

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track's mean ``(8,)`` and covariance ``(3, 4)`` from its first box ``z`` ``(4,)``."""
        means, covs = self.initiate_many(z[:, None])
        return means[:, 0], covs[:, :, 0]

    def initiate_many(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`initiate` for ``N`` boxes ``(4, N)``: ``(8, N)``, ``(3, 4, N)``."""
        n = z.shape[1]
        means = np.concatenate([z, np.zeros((4, n))])
        wh = np.concatenate([z[2:4], z[2:4]])  # (w, h, w, h)
        covs = np.zeros((3, 4, n))
        covs[0] = (wh * (2 * _STD_POS)) ** 2
        covs[2] = (wh * (10 * _STD_VEL)) ** 2
        return means, covs

    def predict(self, means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step, ``x = F x``, ``P = F P F^T + Q``: ``(8, N)``, ``(3, 4, N)``."""
        if means.shape[1] == 0:
            return means, covs
        wh = np.concatenate([means[2:4], means[2:4]])
        pp, pv, vv = covs
        out = np.empty_like(covs)
        out[0] = (pp + pv) + (pv + vv) + (wh * _STD_POS) ** 2
        out[1] = pv + vv
        out[2] = vv + (wh * _STD_VEL) ** 2
        means = means.copy()
        means[:4] += means[4:]
        np.maximum(means[2:4], 1.0, out=means[2:4])  # a shrinking box stays a box
        return means, out

    def update(self, means: np.ndarray, covs: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct ``N`` predictions ``(8, N)``, ``(3, 4, N)`` with their matched boxes ``z`` ``(4, N)``:
        the gain ``K = P H^T S^-1`` with the diagonal ``S = H P H^T + R`` is a division per coordinate."""
        if means.shape[1] == 0:
            return means, covs
        wh = np.concatenate([means[2:4], means[2:4]])
        pp, pv, vv = covs
        s = pp + (wh * _STD_POS) ** 2
        kp, kv = pp / s, pv / s  # K's position and velocity rows
        innovation = z - means[:4]
        means = means.copy()
        means[:4] += kp * innovation
        means[4:] += kv * innovation
        out = np.empty_like(covs)  # P - K H P
        out[0] = pp - kp * pp
        out[1] = pv - kp * pv
        out[2] = vv - kv * pv
        return means, out


# Rows of Tracker._info: one column per track, float64 (the integers in it are exact)
_BOX = slice(0, 4)  # the last matched detection, xyxy
_SCORE, _CLASS, _FIRST, _LAST, _ID, _LOST, _STREAM = 4, 5, 6, 7, 8, 9, 10  # _ID: -1 until confirmed; _LOST: 0 or 1
_INFO = 11


@dataclass(frozen=True)
class TrackState:
    """A track as :attr:`Tracker.tracks` shows it: ``track_id`` ``-1`` until confirmed; ``box`` /
    ``score`` / ``class_id`` its last detection; ``mean`` its filter state ``(cx, cy, w, h, vx, vy,
    vw, vh)``; ``stream`` the stream it is in."""

    track_id: int
    class_id: int
    box: tuple[float, float, float, float]
    score: float
    first_frame: int
    last_frame: int
    lost: bool
    mean: tuple[float, ...]
    stream: int = 0

    @property
    def confirmed(self) -> bool:
        return self.track_id >= 0


def _linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment  # imported by Tracker() already: not in a frame's time

    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def _match(sim: np.ndarray, gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One stage's matches ``(rows, cols)``, rows ascending: the linear assignment of the cost
    ``1 - sim`` (``_NO_MATCH`` outside ``gate``), the pairs inside the gate kept.

    When no row and no column has two candidates in the gate, the assignment is those pairs, all
    of them (any assignment leaving one out costs ``_NO_MATCH`` more), and the solver is skipped;
    with objects apart, the usual case, it is never called.
    """
    r, c = gate.nonzero()
    if r.size <= 1 or (len(set(r.tolist())) == r.size and len(set(c.tolist())) == c.size):
        return r, c
    rows, cols = _linear_assignment(np.where(gate, 1.0 - sim, _NO_MATCH))
    ok = gate[rows, cols]
    return rows[ok], cols[ok]


def _pair_iou(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray, positive: bool = True) -> np.ndarray:
    """The IoU of the pairs of columns ``a[:, rows]``, ``b[:, cols]`` (``(4, N)`` xyxy boxes,
    float64): the values of :func:`~detnet_trt.runtime.nms.box_iou` (the same operations on each
    pair). ``positive``: every union is known to be at least 1e-12 (the guards would change nothing
    and are skipped)."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    area_a = np.maximum(ax2 - ax1, 0.0) * np.maximum(ay2 - ay1, 0.0)
    area_b = np.maximum(bx2 - bx1, 0.0) * np.maximum(by2 - by1, 0.0)
    iw = np.maximum(np.minimum(ax2[rows], bx2[cols]) - np.maximum(ax1[rows], bx1[cols]), 0.0)
    inter = iw * np.maximum(np.minimum(ay2[rows], by2[cols]) - np.maximum(ay1[rows], by1[cols]), 0.0)
    union = area_a[rows] + area_b[cols] - inter
    if positive:
        return inter / union
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Frame:
    """One step's working set: one frame of each stream in the step, their detections taken in
    turn as one list. The step's *candidates* ``cand`` are the indices of the detections at or
    above the low threshold: ``dinfo`` ``(6, C)`` their ``(box, score, class)``, one column each
    (float64), ``cstream`` their streams, ``high`` which of them are high. The tracks of the
    step's streams: ``tstream`` theirs, ``col`` the candidate each matched this step (``-1``:
    none). ``prow`` / ``pcol``: the (track, candidate) pairs that may match, each track with every
    candidate of its stream (of its class too when class-aware), by track then candidate;
    ``piou`` / ``psim`` their IoU of the track's prediction with the candidate (``psim`` times the
    score when ``fuse_score``). ``joined``: the step's detections, all frames' arrays in turn
    (``None`` for one frame, or frames of different dtypes)."""

    high_det: np.ndarray  # per detection of the step
    cand: np.ndarray
    dinfo: np.ndarray
    cstream: np.ndarray
    high: np.ndarray
    tstream: np.ndarray
    col: np.ndarray
    prow: np.ndarray
    pcol: np.ndarray
    piou: np.ndarray
    psim: np.ndarray
    joined: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the frames' (boxes, scores, class_ids)
    ends: np.ndarray | None = None  # where each frame's detections end in the step's (several frames)


class Tracker:
    """ByteTrack over the frames of one stream, or of several at once. ``high``: the high-score
    threshold when ``config.high`` is ``None`` (the detector's ``--conf``). Track ids count from 1
    per stream, and a stream's tracks only ever match its own detections.

    The tracks of every stream live in three arrays, one column per track, each stream's in the
    order they started: the filter means ``(8, T)``, covariances ``(3, 4, T)`` (see
    :class:`KalmanBoxFilter`) and the rest (``_info`` ``(11, T)``, see its rows, the stream among
    them). :meth:`update_many` takes one frame of each of several streams in one step: each
    association stage is a mask over the pairs of a track and a detection of the same stream, so
    that a step costs a fixed few dozen NumPy calls for all the streams together plus a few per
    stream, none per track; its results are those of one :meth:`update` per stream in turn (the
    tests check it).
    """

    def __init__(self, config: TrackerConfig = TrackerConfig(), high: float = 0.5) -> None:
        self.config = config
        self.high = config.high if config.high is not None else high
        self.low = min(config.low, self.high)
        self.kf = KalmanBoxFilter()
        self._mean = np.zeros((8, 0))
        self._cov = np.zeros((3, 4, 0))
        self._info = np.zeros((_INFO, 0))
        self._frames = np.zeros(0, np.int64)  # per stream index: its last frame (-1: none yet)
        self._next = np.zeros(0, np.int64)  # per stream index: the next track id
        import scipy.optimize  # noqa: F401 - the first import takes a while: here, before the first frame

    @property
    def frame(self) -> int:
        """Stream 0's last frame (0-based, one per update; -1 before its first)."""
        return self.frame_of(0)

    def frame_of(self, stream: int) -> int:
        """Stream ``stream``'s last frame (-1 before its first)."""
        return int(self._frames[stream]) if 0 <= stream < self._frames.size else -1

    @property
    def streams(self) -> list[int]:
        """The stream indices updated so far, ascending."""
        return (self._frames >= 0).nonzero()[0].tolist()

    def started(self, stream: int = 0) -> int:
        """Tracks of ``stream`` confirmed so far (the ids handed out)."""
        return int(self._next[stream]) - 1 if 0 <= stream < self._next.size else 0

    @property
    def tracks(self) -> list[TrackState]:
        """The tracks now (tracked, pending confirmation and lost), each stream's oldest first."""
        return [TrackState(int(r[_ID]), int(r[_CLASS]), (r[0], r[1], r[2], r[3]), r[_SCORE], int(r[_FIRST]),
                           int(r[_LAST]), bool(r[_LOST]), tuple(m), int(r[_STREAM]))
                for r, m in zip(self._info.T.tolist(), self._mean.T.tolist())]

    @property
    def n_confirmed(self) -> int:
        """Confirmed tracks now (tracked and lost), of every stream."""
        return int(np.count_nonzero(self._info[_ID] >= 0))

    def confirmed_in(self, stream: int) -> int:
        """Confirmed tracks of ``stream`` now."""
        return int(np.count_nonzero((self._info[_ID] >= 0) & (self._info[_STREAM] == stream)))

    def _event(self, kind: str, col: int) -> TrackEvent:
        r = self._info[:, col].tolist()
        return TrackEvent(kind, int(r[_ID]), int(r[_CLASS]), (r[0], r[1], r[2], r[3]), r[_SCORE], int(r[_FIRST]),
                          int(r[_LAST]))

    def _keep(self, mask: np.ndarray) -> None:
        """Only the tracks in ``mask`` stay."""
        self._mean, self._cov, self._info = self._mean[:, mask], self._cov[:, :, mask], self._info[:, mask]

    def update(self, dets: Detections, stream: int = 0) -> TrackUpdate:
        """Associate one frame's detections of ``stream`` (every detection the detector kept, scores
        included)."""
        return self.update_many([(stream, dets)])[0]

    def update_many(self, frames: Sequence[tuple[int, Detections]]) -> list[TrackUpdate]:
        """One frame each of several streams, ``(stream index, detections)``, in one step; the
        updates in the same order. A stream given again starts a new step (its frames in turn)."""
        out: list[TrackUpdate] = []
        step: list[tuple[int, Detections]] = []
        for item in frames:
            s = item[0]
            if not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"stream index {s!r} is not an integer >= 0")
            if any(s == t for t, _ in step):
                out += self._step(step)
                step = []
            step.append(item)
        if step:
            out += self._step(step)
        return out

    def _step(self, frames: Sequence[tuple[int, Detections]]) -> list[TrackUpdate]:
        streams = np.fromiter((s for s, _ in frames), np.int64, len(frames))
        top = int(streams.max()) + 1
        if top > self._frames.size:
            k = top - self._frames.size
            self._frames = np.concatenate([self._frames, np.full(k, -1, np.int64)])
            self._next = np.concatenate([self._next, np.ones(k, np.int64)])
        self._frames[streams] += 1
        rest = self._take(streams)
        out = self._associate(frames, streams)
        if rest is not None:  # the other streams' tracks back (each stream's tracks keep their order)
            self._mean, self._cov, self._info = (np.concatenate([a, b], axis=-1) for a, b in
                                                 zip(rest, (self._mean, self._cov, self._info)))
        return out

    def _take(self, streams: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Leave only the tracks of ``streams`` in the arrays; returns the others (``None``: none)."""
        ts = self._info[_STREAM]
        if streams.size == 1:
            mine = ts == streams[0]
        else:
            stepping = np.zeros(self._frames.size, bool)
            stepping[streams] = True
            mine = stepping[ts.astype(np.int64)]
        if mine.all():
            return None
        other = ~mine
        rest = self._mean[:, other], self._cov[:, :, other], self._info[:, other]
        self._keep(mine)
        return rest

    def _start(self, frames: Sequence[tuple[int, Detections]], streams: np.ndarray) -> _Frame:
        """Predict every track (a lost one keeps moving but stops growing or shrinking), and
        compare the predictions with the step's candidates."""
        joined, ends = None, None
        if len(frames) == 1:
            d = frames[0][1]
            boxes, scores, cls = d.boxes, d.scores, d.class_ids
            high_det, above = scores >= self.high, scores >= self.low  # compared in the detector's dtype
            dstream = None
        else:
            ds = [d for _, d in frames]
            boxes, scores = np.concatenate([d.boxes for d in ds]), np.concatenate([d.scores for d in ds])
            cls = np.concatenate([d.class_ids for d in ds])
            if len({(d.boxes.dtype, d.scores.dtype, d.class_ids.dtype) for d in ds}) == 1:
                high_det, above = scores >= self.high, scores >= self.low
                joined = boxes, scores, cls
            else:  # each frame's scores compared in their own dtype, as a frame alone is
                high_det = np.concatenate([d.scores >= self.high for d in ds])
                above = np.concatenate([d.scores >= self.low for d in ds])
            counts = [len(d) for d in ds]
            dstream, ends = np.repeat(streams, counts), np.cumsum(counts)
        cand = above.nonzero()[0]
        if cand.size < scores.size:
            boxes, scores, cls = boxes[cand], scores[cand], cls[cand]
        dinfo = np.empty((6, cand.size))
        dinfo[:4], dinfo[4], dinfo[5] = boxes.T, scores, cls
        cstream = np.full(cand.size, streams[0]) if dstream is None else dstream[cand]
        n = self._mean.shape[1]
        none = np.zeros(0, np.int64)
        fr = _Frame(high_det, cand, dinfo, cstream, high_det[cand], self._info[_STREAM].astype(np.int64),
                    np.full(n, -1, np.int64), none, none, np.zeros(0), np.zeros(0), joined, ends)
        if n:
            lost = self._info[_LOST] > 0
            if lost.any():
                self._mean[6:8, lost] = 0.0
            self._mean, self._cov = self.kf.predict(self._mean, self._cov)
            if cand.size:
                if dstream is None:  # one stream: every pair
                    prow, pcol = np.repeat(np.arange(n), cand.size), np.tile(np.arange(cand.size), n)
                else:
                    prow, pcol = self._pairs(fr, streams, cand)
                if self.config.class_aware:
                    same = self._info[_CLASS, prow] == dinfo[5, pcol]
                    prow, pcol = prow[same], pcol[same]
                # a prediction's sides are at least 1: every union is at least 1
                fr.prow, fr.pcol = prow, pcol
                fr.piou = _pair_iou(_xyxy(self._mean[:4]), dinfo[:4], prow, pcol)
                fr.psim = fr.piou * dinfo[4, pcol] if self.config.fuse_score else fr.piou
        return fr

    def _pairs(self, fr: _Frame, streams: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (track, candidate) pair of the same stream, by track then candidate: the
        candidates of the step's ``k``-th frame are one run of indices."""
        where = np.zeros(self._frames.size, np.int64)
        where[streams] = np.arange(streams.size)
        assert fr.ends is not None
        cb = np.searchsorted(cand, np.concatenate([[0], fr.ends]))  # the frames' first candidates, and the end
        k = where[fr.tstream]
        lo, n = cb[k], cb[k + 1] - cb[k]
        start = np.cumsum(n) - n
        rows = np.repeat(np.arange(k.size), n)
        return rows, np.arange(rows.size) + np.repeat(lo - start, n)

    def _stage(self, fr: _Frame, rows: np.ndarray, cols: np.ndarray, min_sim: float, fuse: bool) -> np.ndarray:
        """Associate the tracks in the mask ``rows`` with the candidates in the mask ``cols`` (the
        linear assignment of the cost ``1 - sim``, pairs below ``min_sim`` left out, see
        :func:`_match`); records the matches in ``fr.col``; returns the matched tracks, ascending.

        The pairs in the gate are the matches unless a track or a candidate has two; a stream
        where one has is solved on its own stage matrix, as ByteTrack solves it."""
        if not (rows.any() and cols.any()):
            return np.zeros(0, np.int64)
        psim = fr.psim if fuse else fr.piou
        gate = psim >= min_sim
        gate &= rows[fr.prow]
        gate &= cols[fr.pcol]
        r, c = fr.prow[gate], fr.pcol[gate]
        if r.size > 1:
            cs = np.sort(c)
            twice_r, twice_c = r[1:][r[1:] == r[:-1]], cs[1:][cs[1:] == cs[:-1]]  # r is ascending
            if twice_r.size or twice_c.size:
                bad = sorted(set(fr.tstream[twice_r].tolist()) | set(fr.cstream[twice_c].tolist()))
                stream_of = fr.tstream[r]
                keep = stream_of != bad[0] if len(bad) == 1 else ~np.isin(stream_of, bad)
                rs, cs_ = [r[keep]], [c[keep]]
                sims = psim[gate]
                for s in bad:
                    a, b = self._solve(fr, rows, cols, r, c, sims, stream_of == s, s)
                    rs.append(a)
                    cs_.append(b)
                r, c = np.concatenate(rs), np.concatenate(cs_)
                order = np.argsort(r, kind="stable")
                r, c = r[order], c[order]
        fr.col[r] = c
        return r

    @staticmethod
    def _solve(fr: _Frame, rows: np.ndarray, cols: np.ndarray, r: np.ndarray, c: np.ndarray, sims: np.ndarray,
               mine: np.ndarray, stream: int) -> tuple[np.ndarray, np.ndarray]:
        """The matches of ``stream``'s tracks in ``rows`` with its candidates in ``cols``: the
        stage's matrix of that stream, solved by :func:`_match`. Only the pairs in the gate, ``(r,
        c)`` with ``sims`` (``mine``: those of this stream), enter it: the cost of the others is
        ``_NO_MATCH`` whatever their ``sim``."""
        ri = (rows & (fr.tstream == stream)).nonzero()[0]
        ci = (cols & (fr.cstream == stream)).nonzero()[0]
        at = np.searchsorted(ri, r[mine]), np.searchsorted(ci, c[mine])
        sim, gate = np.zeros((ri.size, ci.size)), np.zeros((ri.size, ci.size), bool)
        sim[at], gate[at] = sims[mine], True
        a, b = _match(sim, gate)
        return ri[a], ci[b]

    def _associate(self, frames: Sequence[tuple[int, Detections]], streams: np.ndarray) -> list[TrackUpdate]:
        """One step over the tracks of ``streams`` (the only ones in the arrays now)."""
        cfg = self.config
        fr = self._start(frames, streams)
        info = self._info
        events: list[tuple[int, TrackEvent]] = []  # (stream, event), in the order they happen
        new = fr.high
        noise = np.zeros(0, np.int64)
        if info.shape[1]:
            confirmed, lost = info[_ID] >= 0, info[_LOST] > 0
            if fr.cand.size:
                self._stage(fr, confirmed, fr.high, cfg.match_iou, cfg.fuse_score)  # tracked and lost, high scores
                free = fr.col < 0
                tracked_free = free & confirmed & ~lost
                self._stage(fr, tracked_free, ~fr.high, cfg.low_iou, False)  # still unmatched tracked ones, low scores
                new = fr.high.copy()
                new[fr.col[~free]] = False
                third = self._stage(fr, ~confirmed, new, cfg.new_iou, cfg.fuse_score)  # pending tracks, high left
                new[fr.col[third]] = False
                info[_LOST, tracked_free & (fr.col < 0)] = 1.0
                matched = (fr.col >= 0).nonzero()[0]
                if matched.size:
                    self._apply(matched, fr)
                self._confirm(third, events)  # pending tracks seen again
            else:  # nothing detected: every tracked track is lost now
                info[_LOST, confirmed] = 1.0
            noise = (~confirmed & (fr.col < 0)).nonzero()[0]
        new_pos = new.nonzero()[0]
        first = self._add(fr.dinfo[:, new_pos], fr.cstream[new_pos])
        col = fr.col
        if new_pos.size:
            at_once = self._frames[fr.cstream[new_pos]] == 0  # a stream's first frame: its objects are tracks at once
            if at_once.any():  # (as in ByteTrack)
                self._confirm(first + at_once.nonzero()[0], events)
            col = np.concatenate([col, np.where(at_once, new_pos, -1)])
        alive, ended = self._end_old(noise)
        events += [(int(self._info[_STREAM, t]), self._event("end", t)) for t in ended]
        out = self._report(frames, fr, col, alive, events)
        if not alive.all():
            self._keep(alive)
        return out

    def _apply(self, tracks: np.ndarray, fr: _Frame) -> None:
        """Correct every matched track with its detection (one filter update for all)."""
        matched = fr.dinfo[:, fr.col[tracks]]
        z = _cxcywh(matched[:4])
        if tracks.size == self._mean.shape[1]:  # every track matched: no gather, no scatter
            self._mean, self._cov = self.kf.update(self._mean, self._cov, z)
            self._info[:_FIRST] = matched
            self._info[_LAST] = self._frames[fr.tstream]
            self._info[_LOST] = 0.0
            return
        self._mean[:, tracks], self._cov[:, :, tracks] = self.kf.update(self._mean[:, tracks], self._cov[:, :, tracks], z)
        self._info[:_FIRST, tracks] = matched
        self._info[_LAST, tracks] = self._frames[fr.tstream[tracks]]
        self._info[_LOST, tracks] = 0.0

    def _confirm(self, tracks: np.ndarray, events: list[tuple[int, TrackEvent]]) -> None:
        """Give ``tracks`` their ids (each the next of its stream, in this order) and start events."""
        for t in tracks.tolist():
            s = int(self._info[_STREAM, t])
            self._info[_ID, t] = self._next[s]
            self._next[s] += 1
            events.append((s, self._event("start", t)))

    def _add(self, dinfo: np.ndarray, streams: np.ndarray) -> int:
        """New tracks, pending, from the candidates ``dinfo`` ``(6, k)`` of ``streams``; returns the
        first one's index."""
        first, k = self._mean.shape[1], dinfo.shape[1]
        if k:
            means, covs = self.kf.initiate_many(_cxcywh(dinfo[:4]))
            info = np.empty((_INFO, k))
            info[:_FIRST] = dinfo
            info[_FIRST] = info[_LAST] = self._frames[streams]
            info[_ID], info[_LOST], info[_STREAM] = -1.0, 0.0, streams
            self._mean = np.concatenate([self._mean, means], axis=1)
            self._cov = np.concatenate([self._cov, covs], axis=2)
            self._info = np.concatenate([self._info, info], axis=1)
        return first

    def _end_old(self, noise: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Drop the pending tracks ``noise`` (not seen again), end the lost tracks older than the
        buffer, and one of each tracked/lost pair of a stream that overlap as one object (the
        younger, as ByteTrack does). Returns the tracks that stay (a mask; :meth:`_associate` drops
        the others after its report) and the ended ones, in the order they end."""
        info = self._info
        alive = np.ones(info.shape[1], bool)
        alive[noise] = False
        lost = info[_LOST] > 0
        if not lost.any():
            return alive, []
        ts = info[_STREAM].astype(np.int64)
        aged = lost & (self._frames[ts] - info[_LAST] > self.config.buffer)  # lost tracks are confirmed and alive
        ended = aged.nonzero()[0].tolist()
        tracked = (alive & (info[_ID] >= 0) & ~lost).nonzero()[0]
        still = (lost & ~aged).nonzero()[0]
        if tracked.size and still.size:  # the pairs of a stream, by tracked then lost track
            a, b = np.repeat(tracked, still.size), np.tile(still, tracked.size)
            same = ts[a] == ts[b]
            a, b = a[same], b[same]
            box = _xyxy(self._mean[:4])
            dup = _pair_iou(box, box, a, b, positive=False) > _DUPLICATE_IOU
            age = (info[_LAST] - info[_FIRST]).tolist()
            for a_, b_ in zip(a[dup].tolist(), b[dup].tolist()):
                younger = a_ if age[a_] < age[b_] else b_
                if younger not in ended:
                    ended.append(younger)
        alive[ended] = False
        return alive, ended

    def _report(self, frames: Sequence[tuple[int, Detections]], fr: _Frame, col: np.ndarray, alive: np.ndarray,
                events: list[tuple[int, TrackEvent]]) -> list[TrackUpdate]:
        """Per frame: every high detection and every one that continued a confirmed track still
        alive, with its id, and its stream's events."""
        ids = np.full(fr.high_det.size, -1, np.int64)
        tid = self._info[_ID]
        ok = (col >= 0) & (tid >= 0) & alive
        ids[fr.cand[col[ok]]] = tid[ok]
        keep = fr.high_det | (ids >= 0)
        if len(frames) == 1:
            return [_reported(frames[0][1], ids, keep, tuple(e for _, e in events))]
        by_stream: dict[int, list[TrackEvent]] = {}
        for s, e in events:
            by_stream.setdefault(s, []).append(e)
        out = []
        if fr.joined is None:
            at = 0
            for s, d in frames:
                n = len(d)
                out.append(_reported(d, ids[at:at + n], keep[at:at + n], tuple(by_stream.get(s, ()))))
                at += n
            return out
        assert fr.ends is not None
        sel = keep.nonzero()[0]  # what every frame reports, selected at once and cut per frame
        boxes, scores, cls = (a[sel] for a in fr.joined)
        kept_ids = ids[sel]
        lo = 0
        for (s, d), hi in zip(frames, np.searchsorted(sel, fr.ends).tolist()):
            ev = tuple(by_stream.get(s, ()))
            if hi - lo == len(d):
                out.append(TrackUpdate(d, kept_ids[lo:hi], ev))
            else:
                out.append(TrackUpdate(Detections(boxes[lo:hi], scores[lo:hi], cls[lo:hi]), kept_ids[lo:hi], ev))
            lo = hi
        return out

    def finish(self, stream: int | None = None) -> list[TrackEvent]:
        """End every confirmed track of ``stream`` (``None``: of every stream, each stream's in
        turn): the stream ended. Its tracks are gone afterwards; its ids keep counting."""
        info = self._info
        mine = np.ones(info.shape[1], bool) if stream is None else info[_STREAM] == stream
        tracks = (mine & (info[_ID] >= 0)).nonzero()[0]
        if stream is None and tracks.size:
            tracks = tracks[np.argsort(info[_STREAM, tracks], kind="stable")]
        events = [self._event("end", t) for t in tracks.tolist()]
        if mine.any():
            self._keep(~mine)
        return events


def _reported(dets: Detections, ids: np.ndarray, keep: np.ndarray, events: tuple[TrackEvent, ...]) -> TrackUpdate:
    """The :class:`TrackUpdate` of one frame: its detections where ``keep``, with their ids."""
    if keep.all():
        return TrackUpdate(dets, ids, events)
    sel = keep.nonzero()[0]
    return TrackUpdate(Detections(dets.boxes[sel], dets.scores[sel], dets.class_ids[sel]), ids[sel], events)


class StreamTrackers:
    """The tracking of a run's ``streams`` streams (by stream index; ids are per stream), all in one
    :class:`Tracker`, so that :meth:`update_many` tracks a whole batch in one step. ``high``: the
    high threshold when ``config.high`` is unset."""

    def __init__(self, config: TrackerConfig = TrackerConfig(), high: float = 0.5, streams: int = 1) -> None:
        self.n_streams = streams
        self.tracker = Tracker(config, high)  # now: SciPy loads before the loop
        self._alive_at_end: dict[int, int] = {}  # finished streams: their confirmed tracks when they ended

    def update(self, stream: int, dets: Detections) -> TrackUpdate:
        return self.tracker.update(dets, stream)

    def update_many(self, frames: Sequence[tuple[int, Detections]]) -> list[TrackUpdate]:
        """One frame each of several streams (a batch) in one step, see :meth:`Tracker.update_many`."""
        return self.tracker.update_many(frames)

    def finish(self, streams: Sequence[int] | None = None) -> dict[int, list[TrackEvent]]:
        """End the tracks of ``streams`` (their sources ended; ``None``: every stream, the run
        ended): their end events, per stream index (empty for a stream finished before)."""
        out = {s: self.tracker.finish(s) for s in (self._all() if streams is None else sorted(set(streams)))}
        for s, events in out.items():
            self._alive_at_end.setdefault(s, len(events))
        return out

    def _all(self) -> list[int]:
        return sorted(set(range(self.n_streams)) | set(self.tracker.streams))

    def stats(self) -> dict[str, Any]:
        """Tracks started per stream index (ids handed out) and alive: now, or when the stream ended."""
        return {str(s): {"tracks": self.tracker.started(s),
                         "alive": self._alive_at_end.get(s, self.tracker.confirmed_in(s))} for s in self._all()}


__all__ = ["KalmanBoxFilter", "StreamTrackers", "TrackEvent", "TrackState", "TrackUpdate", "Tracker", "TrackerConfig",
           "cxcywh_to_xyxy", "xyxy_to_cxcywh"]
