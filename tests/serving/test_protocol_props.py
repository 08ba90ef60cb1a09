"""Property-based tests (hypothesis) of the Triton request/response contract
(``detnet_trt.serving.triton.protocol``): packing and unpacking detections is a round trip for
any detections, and a response that breaks the contract is refused, never read as other results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detnet_trt.runtime.postprocess import Detections
from detnet_trt.serving.triton import protocol
from detnet_trt.serving.triton.protocol import ProtocolError, pack_detections, unpack_detections

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def detections(draw: st.DrawFn, max_rows: int = 12) -> Detections:
    m = draw(st.integers(0, max_rows))
    coords = draw(st.lists(st.floats(-1e4, 1e4, width=32), min_size=4 * m, max_size=4 * m))
    scores = draw(st.lists(st.floats(0, 1, width=32), min_size=m, max_size=m))
    cls = draw(st.lists(st.integers(0, 1000), min_size=m, max_size=m))
    return Detections(
        np.asarray(coords, np.float32).reshape(m, 4), np.asarray(scores, np.float32), np.asarray(cls, np.int32)
    )


@SETTINGS
@given(st.lists(detections(), min_size=0, max_size=5), st.integers(1, 16))
def test_pack_unpack_round_trip(dets: list[Detections], max_det: int) -> None:
    packed = pack_detections(dets, max_det)
    n = len(dets)
    assert packed[protocol.DET_BOXES].shape == (n, max_det, 4) and packed[protocol.DET_BOXES].dtype == np.float32
    assert packed[protocol.DET_SCORES].shape == (n, max_det) and packed[protocol.DET_SCORES].dtype == np.float32
    assert packed[protocol.DET_CLASS_IDS].shape == (n, max_det) and packed[protocol.DET_CLASS_IDS].dtype == np.int32
    assert packed[protocol.NUM_DETS].shape == (n, 1) and packed[protocol.NUM_DETS].dtype == np.int32
    got = unpack_detections(packed)
    assert len(got) == n
    for d, (b, s, c), num in zip(dets, got, packed[protocol.NUM_DETS][:, 0]):
        m = min(len(d), max_det)
        assert num == m
        np.testing.assert_array_equal(b, d.boxes[:m])
        np.testing.assert_array_equal(s, d.scores[:m])
        np.testing.assert_array_equal(c, d.class_ids[:m])
    # padding rows are recognisable: class -1, score 0, box 0
    for i, num in enumerate(packed[protocol.NUM_DETS][:, 0]):
        assert (packed[protocol.DET_CLASS_IDS][i, num:] == -1).all()
        assert (packed[protocol.DET_SCORES][i, num:] == 0).all()
        assert (packed[protocol.DET_BOXES][i, num:] == 0).all()


@SETTINGS
@given(st.lists(detections(), min_size=1, max_size=3), st.integers(1, 8))
def test_round_trip_through_the_wire_dtypes(dets: list[Detections], max_det: int) -> None:
    """What a client reads back after the arrays went over the wire as bytes (row-major, little-endian)."""
    packed = pack_detections(dets, max_det)
    wire = {
        k: np.frombuffer(v.astype(v.dtype.newbyteorder("<")).tobytes(), v.dtype.newbyteorder("<")).reshape(v.shape)
        for k, v in packed.items()
    }
    for (b0, s0, c0), (b1, s1, c1) in zip(unpack_detections(packed), unpack_detections(wire)):
        np.testing.assert_array_equal(b0, b1)
        np.testing.assert_array_equal(s0, s1)
        np.testing.assert_array_equal(c0, c1)


def _drop(name: str):
    return lambda p: {k: v for k, v in p.items() if k != name}


def _reshape(name: str, shape_of):
    def f(p):
        q = dict(p)
        q[name] = np.zeros(shape_of(p[name].shape), p[name].dtype)
        return q

    return f


def _num(value_of):
    def f(p):
        q = dict(p)
        num = p[protocol.NUM_DETS].copy()
        num[0, 0] = value_of(p[protocol.DET_BOXES].shape[1])
        q[protocol.NUM_DETS] = num
        return q

    return f


CORRUPTIONS = {
    "no det_boxes": (_drop(protocol.DET_BOXES), "det_boxes"),
    "no det_scores": (_drop(protocol.DET_SCORES), "det_scores"),
    "no det_class_ids": (_drop(protocol.DET_CLASS_IDS), "det_class_ids"),
    "no num_dets": (_drop(protocol.NUM_DETS), "num_dets"),
    "boxes of 5 coordinates": (_reshape(protocol.DET_BOXES, lambda s: (s[0], s[1], 5)), "det_boxes"),
    "boxes without a batch": (_reshape(protocol.DET_BOXES, lambda s: s[1:]), "det_boxes"),
    "fewer score rows": (_reshape(protocol.DET_SCORES, lambda s: (s[0], s[1] - 1)), "det_scores"),
    "another batch of classes": (_reshape(protocol.DET_CLASS_IDS, lambda s: (s[0] + 1, s[1])), "det_class_ids"),
    "num_dets of another batch": (_reshape(protocol.NUM_DETS, lambda s: (s[0] + 1, 1)), "num_dets"),
    "num_dets above the rows": (_num(lambda rows: rows + 1), "num_dets[0]"),
    "num_dets far above the rows": (_num(lambda rows: 2**31 - 1), "num_dets[0]"),
    "negative num_dets": (_num(lambda rows: -1), "num_dets[0]"),
}


@SETTINGS
@given(st.lists(detections(), min_size=1, max_size=3), st.integers(1, 8), st.sampled_from(sorted(CORRUPTIONS)))
def test_a_response_that_breaks_the_contract_is_refused(dets: list[Detections], max_det: int, what: str) -> None:
    corrupt, names = CORRUPTIONS[what]
    bad = corrupt(pack_detections(dets, max_det))
    with pytest.raises(ProtocolError, match=names.replace("[", r"\[")) as info:
        unpack_detections(bad)
    assert "\n" not in str(info.value)


def test_num_dets_may_come_flat():
    """A server that returns num_dets as [batch] (no trailing 1) is read the same."""
    dets = [Detections(np.ones((2, 4), np.float32), np.ones(2, np.float32), np.zeros(2, np.int32))]
    packed = pack_detections(dets, 4)
    flat = {**packed, protocol.NUM_DETS: packed[protocol.NUM_DETS].reshape(-1)}
    assert [len(b) for b, _, _ in unpack_detections(flat)] == [2]
