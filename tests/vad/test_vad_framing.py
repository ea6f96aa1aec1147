"""Exact tests of the frame regrouping used by the speech segmenter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vad.framing import FrameBuffer


def test_frames_cross_chunk_boundaries():
    buffer = FrameBuffer(4)
    stream = np.arange(11, dtype=np.float32)
    assert buffer.push(stream[:3]) == []
    frames = buffer.push(stream[3:10])
    assert [f.tolist() for f in frames] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert buffer.remainder.tolist() == [8, 9]
    assert buffer.push(stream[10:10]) == []
    assert [f.tolist() for f in buffer.push(stream[10:])] == []
    assert buffer.remainder.tolist() == [8, 9, 10]
    buffer.clear()
    assert buffer.remainder.tolist() == []


def test_whole_frames_are_views_of_the_chunk():
    chunk = np.arange(8, dtype=np.float32)
    frames = FrameBuffer(4).push(chunk)
    assert all(np.shares_memory(f, chunk) for f in frames)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 7), st.lists(st.integers(0, 40), max_size=8))
def test_frames_tile_the_stream_whatever_the_chunking(frame, cuts):
    stream = np.arange(40, dtype=np.float32)
    bounds = [0, *sorted(cuts), len(stream)]
    buffer = FrameBuffer(frame)
    frames = [f.copy() for a, b in zip(bounds, bounds[1:]) for f in buffer.push(stream[a:b])]
    whole = len(stream) // frame * frame
    assert np.concatenate(frames or [np.zeros(0, np.float32)]).tolist() == stream[:whole].tolist()
    assert buffer.remainder.tolist() == stream[whole:].tolist()


def test_frame_length_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        FrameBuffer(0)
