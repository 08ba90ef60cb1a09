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

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ...core.config import PostprocessConfig
from ...core.limits import PROBABILITY, TRACK_FRAMES
from ...runtime.nms import box_iou
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
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.stack([b[..., 0] + w / 2, b[..., 1] + h / 2, w, h], axis=-1)


def cxcywh_to_xyxy(z: np.ndarray) -> np.ndarray:
    half = z[..., 2:4] / 2
    return np.concatenate([z[..., 0:2] - half, z[..., 0:2] + half], axis=-1)


class KalmanBoxFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, w, h)`` boxes; state ``(cx, cy, w, h, vx, vy,
    vw, vh)`` (one frame per step). Noise scales with the box size, as in DeepSORT and ByteTrack."""

    _F = np.eye(8) + np.eye(8, k=4)
    _WH = [0, 1, 0, 1, 0, 1, 0, 1]  # (w, h, w, h, w, h, w, h)

    @classmethod
    def _noise(cls, wh: np.ndarray, pos: float, vel: float) -> np.ndarray:
        """``(N, 8)`` standard deviations for boxes of width/height ``wh`` ``(N, 2)``."""
        return wh[:, cls._WH] * np.array([pos, pos, pos, pos, vel, vel, vel, vel])

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track's mean ``(8,)`` and covariance ``(8, 8)`` from its first box ``z`` ``(4,)``."""
        mean = np.concatenate([z, np.zeros(4)])
        std = self._noise(z[None, 2:4], 2 * _STD_POS, 10 * _STD_VEL)[0]
        return mean, np.diag(std**2)

    def predict(self, means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step for ``N`` tracks at once: ``(N, 8)``, ``(N, 8, 8)``."""
        if means.shape[0] == 0:
            return means, covs
        std = self._noise(means[:, 2:4], _STD_POS, _STD_VEL)
        means = means @ self._F.T
        covs = self._F @ covs @ self._F.T
        idx = np.arange(8)
        covs[:, idx, idx] += std**2
        means[:, 2:4] = np.maximum(means[:, 2:4], 1.0)  # a shrinking box stays a box
        return means, covs

    def update(self, means: np.ndarray, covs: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct ``N`` predictions ``(N, 8)``, ``(N, 8, 8)`` with their matched boxes ``z`` ``(N, 4)``.

        The innovation covariance ``S = H P H^T + R`` is diagonal: ``F``, ``Q`` and ``R`` never couple
        two coordinates, so each coordinate and its velocity are a filter of their own and ``P``'s
        position block stays diagonal (exactly: its off-diagonal terms are sums of zeros). The gain
        ``P H^T S^-1`` is then a division, with no LAPACK call (whose thread start-up cost more than
        the whole update for 4 x 4; the general solve is the test's reference).
        """
        if means.shape[0] == 0:
            return means, covs
        std = self._noise(means[:, 2:4], _STD_POS, _STD_VEL)[:, :4]
        idx = np.arange(4)
        s = covs[:, idx, idx] + std**2  # the diagonal of S, (N, 4)
        gain = covs[:, :, :4] / s[:, None, :]  # P H^T S^-1, (N, 8, 4)
        means = means + np.einsum("nij,nj->ni", gain, z - means[:, :4])
        covs = covs - gain @ covs[:, :4, :]  # P - K S K^T = P - K H P
        return means, covs


@dataclass(eq=False)
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    box: np.ndarray  # the last matched detection, xyxy
    score: float
    class_id: int
    first_frame: int
    last_frame: int
    pred: np.ndarray = field(default_factory=lambda: np.zeros(4))  # this frame's predicted box, xyxy
    track_id: int = -1  # -1 until confirmed
    lost: bool = False
    hits: int = 1

    @property
    def confirmed(self) -> bool:
        return self.track_id >= 0

    def event(self, kind: str) -> TrackEvent:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return TrackEvent(kind, self.track_id, self.class_id, (x1, y1, x2, y2), self.score, self.first_frame,
                          self.last_frame)


def _linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment  # imported by Tracker() already: not in a frame's time

    rows, cols = linear_sum_assignment(cost)
    return rows, cols


@dataclass
class _Stage:
    """One association stage: ``tracks`` against the detections ``det_idx`` (indices into the frame's)."""

    tracks: list[_Track]
    det_idx: np.ndarray
    min_sim: float
    fuse: bool
    matches: list[tuple[_Track, int]] = field(default_factory=list)
    left_tracks: list[_Track] = field(default_factory=list)
    left_dets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


class Tracker:
    """ByteTrack over one stream's frames. ``high``: the high-score threshold when
    ``config.high`` is ``None`` (the detector's ``--conf``). Track ids count from 1 per tracker."""

    def __init__(self, config: TrackerConfig = TrackerConfig(), high: float = 0.5) -> None:
        self.config = config
        self.high = config.high if config.high is not None else high
        self.low = min(config.low, self.high)
        self.kf = KalmanBoxFilter()
        self.tracks: list[_Track] = []  # tracked (confirmed or not) and lost
        self.frame = -1
        self._next_id = 1
        import scipy.optimize  # noqa: F401 - the first import takes a while: here, before the first frame

    def _associate(self, stage: _Stage, dets: Detections) -> _Stage:
        t, d = len(stage.tracks), stage.det_idx.size
        if t == 0 or d == 0:
            stage.left_tracks, stage.left_dets = list(stage.tracks), stage.det_idx
            return stage
        boxes = dets.boxes[stage.det_idx].astype(np.float64)
        sim = box_iou(np.array([tr.pred for tr in stage.tracks]), boxes)
        if stage.fuse:
            sim = sim * dets.scores[stage.det_idx][None, :]
        gate = sim >= stage.min_sim
        if self.config.class_aware:
            gate &= np.array([tr.class_id for tr in stage.tracks])[:, None] == dets.class_ids[stage.det_idx][None, :]
        rows, cols = _linear_assignment(np.where(gate, 1.0 - sim, _NO_MATCH))
        ok = gate[rows, cols]
        stage.matches = [(stage.tracks[r], int(stage.det_idx[c])) for r, c in zip(rows[ok], cols[ok])]
        matched_t, matched_d = set(rows[ok].tolist()), set(cols[ok].tolist())
        stage.left_tracks = [tr for i, tr in enumerate(stage.tracks) if i not in matched_t]
        stage.left_dets = np.array([j for i, j in enumerate(stage.det_idx.tolist()) if i not in matched_d], np.int64)
        return stage

    def _apply(self, matches: list[tuple[_Track, int]], dets: Detections) -> None:
        """Correct every matched track with its detection (one filter update for all)."""
        if not matches:
            return
        rows = np.array([j for _, j in matches])
        boxes = dets.boxes[rows].astype(np.float64)
        means, covs = self.kf.update(np.array([t.mean for t, _ in matches]), np.array([t.cov for t, _ in matches]),
                                     xyxy_to_cxcywh(boxes))
        for k, (tr, j) in enumerate(matches):
            tr.mean, tr.cov, tr.box = means[k], covs[k], boxes[k]
            tr.score, tr.class_id = float(dets.scores[j]), int(dets.class_ids[j])
            tr.last_frame, tr.lost = self.frame, False
            tr.hits += 1

    def _confirm(self, tr: _Track, events: list[TrackEvent]) -> None:
        tr.track_id = self._next_id
        self._next_id += 1
        events.append(tr.event("start"))

    def _predict(self) -> None:
        if not self.tracks:
            return
        means = np.array([t.mean for t in self.tracks])
        means[[t.lost for t in self.tracks], 6:8] = 0.0  # a lost track keeps moving but stops growing or shrinking
        means, covs = self.kf.predict(means, np.array([t.cov for t in self.tracks]))
        boxes = cxcywh_to_xyxy(means[:, :4])
        for t, m, c, b in zip(self.tracks, means, covs, boxes):
            t.mean, t.cov, t.pred = m, c, b

    def update(self, dets: Detections) -> TrackUpdate:
        """Associate one frame's detections (every detection the detector kept, scores included)."""
        self.frame += 1
        cfg = self.config
        events: list[TrackEvent] = []
        high_idx = np.flatnonzero(dets.scores >= self.high)
        low_idx = np.flatnonzero((dets.scores >= self.low) & (dets.scores < self.high))
        self._predict()
        pool = [t for t in self.tracks if t.confirmed]  # tracked and lost
        unconfirmed = [t for t in self.tracks if not t.confirmed]
        first = self._associate(_Stage(pool, high_idx, cfg.match_iou, cfg.fuse_score), dets)
        second = self._associate(_Stage([t for t in first.left_tracks if not t.lost], low_idx, cfg.low_iou, False), dets)
        third = self._associate(_Stage(unconfirmed, first.left_dets, cfg.new_iou, cfg.fuse_score), dets)
        for t in second.left_tracks:
            t.lost = True
        matches = first.matches + second.matches + third.matches
        self._apply(matches, dets)
        for tr, _ in third.matches:
            self._confirm(tr, events)
        noise = set(map(id, third.left_tracks))  # an unconfirmed track not seen again
        self.tracks = [t for t in self.tracks if id(t) not in noise]
        for j in third.left_dets.tolist():
            tr = self._new_track(dets, j)
            if self.frame == 0:  # the first frame's objects are tracks at once (as in ByteTrack)
                self._confirm(tr, events)
                matches.append((tr, j))
        events += self._end_old()
        return self._report(dets, matches, high_idx, events)

    def _new_track(self, dets: Detections, j: int) -> _Track:
        box = dets.boxes[j].astype(np.float64)
        mean, cov = self.kf.initiate(xyxy_to_cxcywh(box))
        tr = _Track(mean, cov, box, float(dets.scores[j]), int(dets.class_ids[j]), self.frame, self.frame)
        self.tracks.append(tr)
        return tr

    def _end_old(self) -> list[TrackEvent]:
        """End the lost tracks older than the buffer, and one of each tracked/lost pair that overlap
        as one object (the younger, as ByteTrack does)."""
        ended = [t for t in self.tracks if t.lost and self.frame - t.last_frame > self.config.buffer]
        tracked = [t for t in self.tracks if t.confirmed and not t.lost]
        lost = [t for t in self.tracks if t.lost and t not in ended]
        if tracked and lost:
            iou = box_iou(cxcywh_to_xyxy(np.array([t.mean[:4] for t in tracked])),
                          cxcywh_to_xyxy(np.array([t.mean[:4] for t in lost])))
            for i, k in zip(*np.nonzero(iou > _DUPLICATE_IOU)):
                a, b = tracked[i], lost[k]
                younger = a if a.last_frame - a.first_frame < b.last_frame - b.first_frame else b
                if younger not in ended:
                    ended.append(younger)
        gone = set(map(id, ended))
        self.tracks = [t for t in self.tracks if id(t) not in gone]
        return [t.event("end") for t in ended]

    def _report(self, dets: Detections, matches: list[tuple[_Track, int]], high_idx: np.ndarray,
                events: list[TrackEvent]) -> TrackUpdate:
        alive = set(map(id, self.tracks))
        ids = np.full(len(dets), -1, np.int64)
        for tr, j in matches:
            if tr.confirmed and id(tr) in alive:
                ids[j] = tr.track_id
        keep = np.zeros(len(dets), bool)
        keep[high_idx] = True
        keep |= ids >= 0
        sel = np.flatnonzero(keep)
        return TrackUpdate(Detections(dets.boxes[sel], dets.scores[sel], dets.class_ids[sel]), ids[sel], tuple(events))

    def finish(self) -> list[TrackEvent]:
        """End every confirmed track (the stream ended); the tracker is empty afterwards."""
        events = [t.event("end") for t in self.tracks if t.confirmed]
        self.tracks = []
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
        return {str(k): {"tracks": t._next_id - 1, "alive": sum(1 for x in t.tracks if x.confirmed)}
                for k, t in sorted(self.trackers.items())}


__all__ = ["KalmanBoxFilter", "StreamTrackers", "TrackEvent", "TrackUpdate", "Tracker", "TrackerConfig", "cxcywh_to_xyxy",
           "xyxy_to_cxcywh"]

