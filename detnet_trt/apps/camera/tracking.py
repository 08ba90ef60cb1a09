"""Multi-object tracking for the camera loop (``--track``): a ByteTrack-style tracker, one per stream.

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

:class:`Tracker` ``.update(detections)`` -> :class:`TrackUpdate`: the detections to report (every
detection at or above the high threshold, plus the low-score ones that continued a track), the
track id of each (``-1``: not in a confirmed track yet) and the tracks that started and ended.
"""

from __future__ import annotations

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


class KalmanBoxFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, w, h)`` boxes; state ``(cx, cy, w, h, vx, vy,
    vw, vh)`` (one frame per step). Noise scales with the box size, as in DeepSORT and ByteTrack.
    Every method works on ``N`` tracks at once, in a fixed number of NumPy calls."""

    _F = np.eye(8) + np.eye(8, k=4)
    _CONSTANT_VELOCITY = _F  # while _F is this one, predict() adds instead of multiplying by it (the same sums)
    _Q = np.array([_STD_POS] * 4 + [_STD_VEL] * 4)

    @staticmethod
    def _noise(wh: np.ndarray, pos: float, vel: float) -> np.ndarray:
        """``(N, 8)`` standard deviations for boxes of width/height ``wh`` ``(N, 2)``: ``(w, h, w, h)``
        times ``pos``, then times ``vel``."""
        return np.concatenate([wh, wh, wh, wh], axis=1) * np.array([pos, pos, pos, pos, vel, vel, vel, vel])

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track's mean ``(8,)`` and covariance ``(8, 8)`` from its first box ``z`` ``(4,)``."""
        means, covs = self.initiate_many(z[None])
        return means[0], covs[0]

    def initiate_many(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`initiate` for ``N`` boxes ``(N, 4)``: ``(N, 8)``, ``(N, 8, 8)``."""
        n = z.shape[0]
        means = np.concatenate([z, np.zeros((n, 4))], axis=1)
        covs = np.zeros((n, 8, 8))
        covs.reshape(n, 64)[:, ::9] = self._noise(z[:, 2:4], 2 * _STD_POS, 10 * _STD_VEL) ** 2  # the diagonal
        return means, covs

    def predict(self, means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step: ``(N, 8)``, ``(N, 8, 8)``."""
        n = means.shape[0]
        if n == 0:
            return means, covs
        wh = means[:, 2:4]
        std = np.concatenate([wh, wh, wh, wh], axis=1) * self._Q
        if self._F is self._CONSTANT_VELOCITY:  # F = I + shift: F x and F P F^T are these sums, exactly
            means = means.copy()
            means[:, :4] += means[:, 4:]
            covs = covs.copy()
            covs[:, :4] += covs[:, 4:]
            covs[:, :, :4] += covs[:, :, 4:]
        else:
            means = means @ self._F.T
            covs = self._F @ covs @ self._F.T
        covs.reshape(n, 64)[:, ::9] += std**2  # Q on the diagonal
        np.maximum(means[:, 2:4], 1.0, out=means[:, 2:4])  # a shrinking box stays a box
        return means, covs

    def update(self, means: np.ndarray, covs: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct ``N`` predictions ``(N, 8)``, ``(N, 8, 8)`` with their matched boxes ``z`` ``(N, 4)``.

        The innovation covariance ``S = H P H^T + R`` is diagonal: ``F``, ``Q`` and ``R`` never couple
        two coordinates, so each coordinate and its velocity are a filter of their own and ``P``'s
        position block stays diagonal (exactly: its off-diagonal terms are sums of zeros). The gain
        ``P H^T S^-1`` is then a division, with no LAPACK call (whose thread start-up cost more than
        the whole update for 4 x 4; the general solve is the test's reference).
        """
        n = means.shape[0]
        if n == 0:
            return means, covs
        wh = means[:, 2:4]
        std = np.concatenate([wh, wh], axis=1) * _STD_POS
        s = np.ascontiguousarray(covs).reshape(n, 64)[:, 0:28:9] + std**2  # the diagonal of S, (N, 4)
        gain = covs[:, :, :4] / s[:, None, :]  # P H^T S^-1, (N, 8, 4)
        means = means + np.einsum("nij,nj->ni", gain, z - means[:, :4])
        covs = covs - gain @ covs[:, :4, :]  # P - K S K^T = P - K H P
        return means, covs


# Columns of Tracker._info: one row per track, float64 (the integers in it are exact)
_BOX = slice(0, 4)  # the last matched detection, xyxy
_SCORE, _CLASS, _FIRST, _LAST, _ID, _LOST = 4, 5, 6, 7, 8, 9  # _ID: -1 until confirmed; _LOST: 0 or 1
_INFO = 10


@dataclass(frozen=True)
class TrackState:
    """A track as :attr:`Tracker.tracks` shows it: ``track_id`` ``-1`` until confirmed; ``box`` /
    ``score`` / ``class_id`` its last detection; ``mean`` its filter state ``(cx, cy, w, h, vx, vy,
    vw, vh)``."""

    track_id: int
    class_id: int
    box: tuple[float, float, float, float]
    score: float
    first_frame: int
    last_frame: int
    lost: bool
    mean: tuple[float, ...]

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


def _iou(a: np.ndarray, b: np.ndarray, positive: bool = False) -> np.ndarray:
    """:func:`~detnet_trt.runtime.nms.box_iou` (the same operations, so the same values) in fewer
    NumPy calls: ``(A, 4)`` x ``(B, 4)`` xyxy float64 -> ``(A, B)``. ``positive``: every union is
    known to be at least 1e-12 (the guards then change nothing and are skipped)."""
    wa, wb = np.maximum(a[:, 2:] - a[:, :2], 0.0), np.maximum(b[:, 2:] - b[:, :2], 0.0)
    wh = np.maximum(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = (wa[:, 0] * wa[:, 1])[:, None] + (wb[:, 0] * wb[:, 1])[None, :] - inter
    if positive:
        return inter / union
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class _Frame:
    """One update's working set. Columns are the frame's *candidates* ``cand`` (its detections at
    or above the low threshold): ``dinfo`` their ``(box, score, class)`` rows (float64), ``high``
    which of them are high; ``iou`` / ``sim`` every track's prediction against every candidate
    (``sim`` times the score when ``fuse_score``); ``col`` per track the candidate it matched this
    frame (``-1``: none)."""

    high_det: np.ndarray  # per detection of the frame
    cand: np.ndarray
    dinfo: np.ndarray
    high: np.ndarray
    iou: np.ndarray
    sim: np.ndarray
    col: np.ndarray
    same_class: np.ndarray | None = None


class Tracker:
    """ByteTrack over one stream's frames. ``high``: the high-score threshold when
    ``config.high`` is ``None`` (the detector's ``--conf``). Track ids count from 1 per tracker.

    The tracks live in three arrays, one row per track in the order they started: the filter
    means ``(T, 8)``, covariances ``(T, 8, 8)`` and the rest (``_info``, see its columns); each
    association stage is a mask over one IoU matrix per frame, so that a frame costs a fixed few
    dozen NumPy calls, none per track.
    """

    def __init__(self, config: TrackerConfig = TrackerConfig(), high: float = 0.5) -> None:
        self.config = config
        self.high = config.high if config.high is not None else high
        self.low = min(config.low, self.high)
        self.kf = KalmanBoxFilter()
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._info = np.zeros((0, _INFO))
        self.frame = -1
        self._next_id = 1
        import scipy.optimize  # noqa: F401 - the first import takes a while: here, before the first frame

    @property
    def tracks(self) -> list[TrackState]:
        """The tracks now (tracked, pending confirmation and lost), oldest first."""
        return [TrackState(int(r[_ID]), int(r[_CLASS]), (r[0], r[1], r[2], r[3]), r[_SCORE], int(r[_FIRST]),
                           int(r[_LAST]), bool(r[_LOST]), tuple(m))
                for r, m in zip(self._info.tolist(), self._mean.tolist())]

    @property
    def n_confirmed(self) -> int:
        """Confirmed tracks now (tracked and lost)."""
        return int(np.count_nonzero(self._info[:, _ID] >= 0))

    def _event(self, kind: str, row: int) -> TrackEvent:
        r = self._info[row].tolist()
        return TrackEvent(kind, int(r[_ID]), int(r[_CLASS]), (r[0], r[1], r[2], r[3]), r[_SCORE], int(r[_FIRST]),
                          int(r[_LAST]))

    def _start(self, dets: Detections) -> _Frame:
        """Predict every track (a lost one keeps moving but stops growing or shrinking), and
        compare the predictions with this frame's candidates."""
        scores = dets.scores
        high_det = scores >= self.high  # compared in the detector's dtype, as the low threshold
        above = scores >= self.low
        cand = above.nonzero()[0]
        boxes, cls = dets.boxes, dets.class_ids
        if cand.size < scores.size:
            boxes, scores, cls = boxes[cand], scores[cand], cls[cand]
        dinfo = np.empty((cand.size, 6))
        dinfo[:, :4], dinfo[:, 4], dinfo[:, 5] = boxes, scores, cls
        n = self._mean.shape[0]
        fr = _Frame(high_det, cand, dinfo, high_det[cand], np.zeros((n, cand.size)), np.zeros((n, cand.size)),
                    np.full(n, -1, np.int64))
        if n:
            lost = self._info[:, _LOST] > 0
            if lost.any():
                self._mean[lost, 6:8] = 0.0
            self._mean, self._cov = self.kf.predict(self._mean, self._cov)
            if cand.size:  # a prediction's sides are at least 1: every union is at least 1
                fr.iou = _iou(cxcywh_to_xyxy(self._mean[:, :4]), dinfo[:, :4], positive=True)
                fr.sim = fr.iou * dinfo[:, 4] if self.config.fuse_score else fr.iou
                if self.config.class_aware:
                    fr.same_class = self._info[:, _CLASS, None] == dinfo[:, 5]
        return fr

    def _stage(self, fr: _Frame, rows: np.ndarray, cols: np.ndarray, min_sim: float, fuse: bool) -> np.ndarray:
        """Associate the tracks in the mask ``rows`` with the candidates in the mask ``cols`` (the
        linear assignment of the cost ``1 - sim``, pairs below ``min_sim`` left out, see
        :func:`_match`); records the matches in ``fr.col``; returns the matched rows."""
        sim = fr.sim if fuse else fr.iou
        gate = sim >= min_sim
        gate &= rows[:, None] & cols
        if fr.same_class is not None:
            gate &= fr.same_class
        r, c = gate.nonzero()
        if r.size > 1 and (len(set(r.tolist())) < r.size or len(set(c.tolist())) < c.size):
            ri, ci = rows.nonzero()[0], cols.nonzero()[0]  # the stage's own matrix, as ByteTrack solves it
            ix = np.ix_(ri, ci)
            a, b = _match(sim[ix], gate[ix])
            r, c = ri[a], ci[b]
        fr.col[r] = c
        return r

    def update(self, dets: Detections) -> TrackUpdate:
        """Associate one frame's detections (every detection the detector kept, scores included)."""
        self.frame += 1
        cfg = self.config
        fr = self._start(dets)
        info = self._info
        events: list[TrackEvent] = []
        new = fr.high
        noise = np.zeros(0, np.int64)
        if info.shape[0] and fr.cand.size:
            confirmed, lost = info[:, _ID] >= 0, info[:, _LOST] > 0
            self._stage(fr, confirmed, fr.high, cfg.match_iou, cfg.fuse_score)  # tracked and lost, high scores
            free = fr.col < 0
            tracked_free = free & confirmed & ~lost
            self._stage(fr, tracked_free, ~fr.high, cfg.low_iou, False)  # still unmatched tracked ones, low scores
            new = fr.high.copy()
            new[fr.col[~free]] = False
            third = self._stage(fr, ~confirmed, new, cfg.new_iou, cfg.fuse_score)  # pending tracks, high left
            new[fr.col[third]] = False
            info[tracked_free & (fr.col < 0), _LOST] = 1.0
            matched = (fr.col >= 0).nonzero()[0]
            if matched.size:
                self._apply(matched, fr)
            events += [self._confirm(r) for r in third.tolist()]  # pending tracks seen again
            noise = (~confirmed & (fr.col < 0)).nonzero()[0]
        elif info.shape[0]:  # nothing detected: every tracked track is lost now
            info[:, _LOST] = np.where(info[:, _ID] >= 0, 1.0, info[:, _LOST])
            noise = (info[:, _ID] < 0).nonzero()[0]
        new_pos = new.nonzero()[0]
        first = self._add(fr.dinfo[new_pos])
        col = fr.col
        if new_pos.size:
            if self.frame == 0:  # the first frame's objects are tracks at once (as in ByteTrack)
                events += [self._confirm(r) for r in range(first, first + new_pos.size)]
            col = np.concatenate([col, new_pos if self.frame == 0 else np.full(new_pos.size, -1)])
        alive, ended = self._end_old(noise)
        events += [self._event("end", r) for r in ended]
        out = self._report(dets, fr, col, alive, events)
        if not alive.all():
            self._mean, self._cov, self._info = self._mean[alive], self._cov[alive], self._info[alive]
        return out

    def _apply(self, rows: np.ndarray, fr: _Frame) -> None:
        """Correct every matched track with its detection (one filter update for all)."""
        matched = fr.dinfo[fr.col[rows]]
        z = xyxy_to_cxcywh(matched[:, :4])
        if rows.size == self._mean.shape[0]:  # every track matched: no gather, no scatter
            self._mean, self._cov = self.kf.update(self._mean, self._cov, z)
            self._info[:, :_FIRST] = matched
            self._info[:, _LAST] = self.frame
            self._info[:, _LOST] = 0.0
            return
        self._mean[rows], self._cov[rows] = self.kf.update(self._mean[rows], self._cov[rows], z)
        self._info[rows, :_FIRST] = matched
        self._info[rows, _LAST] = self.frame
        self._info[rows, _LOST] = 0.0

    def _confirm(self, row: int) -> TrackEvent:
        self._info[row, _ID] = self._next_id
        self._next_id += 1
        return self._event("start", row)

    def _add(self, dinfo: np.ndarray) -> int:
        """New tracks, pending, from the candidate rows ``dinfo``; returns the first one's row."""
        first, k = self._mean.shape[0], dinfo.shape[0]
        if k:
            means, covs = self.kf.initiate_many(xyxy_to_cxcywh(dinfo[:, :4]))
            info = np.empty((k, _INFO))
            info[:, :_FIRST] = dinfo
            info[:, _FIRST:_ID] = self.frame
            info[:, _ID], info[:, _LOST] = -1.0, 0.0
            self._mean = np.concatenate([self._mean, means])
            self._cov = np.concatenate([self._cov, covs])
            self._info = np.concatenate([self._info, info])
        return first

    def _end_old(self, noise: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Drop the pending tracks ``noise`` (not seen again), end the lost tracks older than the
        buffer, and one of each tracked/lost pair that overlap as one object (the younger, as
        ByteTrack does). Returns the rows that stay (a mask; :meth:`update` drops the others after
        its report) and the ended ones, in the order they end."""
        info = self._info
        alive = np.ones(info.shape[0], bool)
        alive[noise] = False
        lost = info[:, _LOST] > 0
        if not lost.any():
            return alive, []
        aged = lost & (self.frame - info[:, _LAST] > self.config.buffer)  # lost tracks are confirmed and alive
        ended = aged.nonzero()[0].tolist()
        tracked = (alive & (info[:, _ID] >= 0) & ~lost).nonzero()[0]
        still = (lost & ~aged).nonzero()[0]
        if tracked.size and still.size:
            iou = _iou(cxcywh_to_xyxy(self._mean[tracked, :4]), cxcywh_to_xyxy(self._mean[still, :4]))
            age = (info[:, _LAST] - info[:, _FIRST]).tolist()
            for i, k in zip(*(iou > _DUPLICATE_IOU).nonzero()):
                a, b = int(tracked[i]), int(still[k])
                younger = a if age[a] < age[b] else b
                if younger not in ended:
                    ended.append(younger)
        alive[ended] = False
        return alive, ended

    def _report(self, dets: Detections, fr: _Frame, col: np.ndarray, alive: np.ndarray,
                events: list[TrackEvent]) -> TrackUpdate:
        """Every high detection and every one that continued a confirmed track still alive, with its id."""
        ids = np.full(len(dets), -1, np.int64)
        tid = self._info[:, _ID]
        ok = (col >= 0) & (tid >= 0) & alive
        ids[fr.cand[col[ok]]] = tid[ok]
        sel = (fr.high_det | (ids >= 0)).nonzero()[0]
        if sel.size == len(dets):
            return TrackUpdate(dets, ids, tuple(events))
        return TrackUpdate(Detections(dets.boxes[sel], dets.scores[sel], dets.class_ids[sel]), ids[sel], tuple(events))

    def finish(self) -> list[TrackEvent]:
        """End every confirmed track (the stream ended); the tracker is empty afterwards."""
        events = [self._event("end", r) for r in (self._info[:, _ID] >= 0).nonzero()[0].tolist()]
        self._mean, self._cov, self._info = self._mean[:0], self._cov[:0], self._info[:0]
        return events


class StreamTrackers:
    """One :class:`Tracker` per stream (by stream index), made at the stream's first frame; a
    stream's ids are its own. ``high``: the high threshold when ``config.high`` is unset."""

    def __init__(self, config: TrackerConfig = TrackerConfig(), high: float = 0.5) -> None:
        self.config, self.high = config, high
        self.trackers: dict[int, Tracker] = {0: Tracker(config, high)}  # stream 0 now: SciPy loads before the loop

    def update(self, stream: int, dets: Detections) -> TrackUpdate:
        tracker = self.trackers.get(stream)
        if tracker is None:
            tracker = self.trackers[stream] = Tracker(self.config, self.high)
        return tracker.update(dets)

    def finish(self) -> dict[int, list[TrackEvent]]:
        """End every stream's tracks (the run ended): their end events, per stream index."""
        return {k: t.finish() for k, t in sorted(self.trackers.items())}

    def stats(self) -> dict[str, Any]:
        """Tracks started per stream index (ids handed out) and alive now."""
        return {str(k): {"tracks": t._next_id - 1, "alive": t.n_confirmed}
                for k, t in sorted(self.trackers.items())}


__all__ = ["KalmanBoxFilter", "StreamTrackers", "TrackEvent", "TrackState", "TrackUpdate", "Tracker", "TrackerConfig",
           "cxcywh_to_xyxy", "xyxy_to_cxcywh"]

