"""bench/golden.py's own parts, without a server: its client-side codec and pieces, and its normalization.

The full golden run (about 3 minutes on 2 cores) is run by hand: `PYTHONPATH=. python -m bench.golden OUT`.
"""

from __future__ import annotations

import json

import numpy as np

from bench import golden
from stream.protocol import mulaw


def test_its_mulaw_encoder_is_the_projects():
    """The golden client encodes μ-law itself (so both sides of a comparison get the same bytes);
    it must be the G.711 the server decodes."""
    x = np.arange(-32768, 32768, dtype=np.int32).astype("<i2")
    assert golden.mulaw_encode(x) == mulaw.encode(x)


def test_pieces_cycle_whole_frames_and_keep_every_byte():
    data = bytes(range(256)) * 400  # 102400 bytes: more than one cycle of 4-byte frames
    parts = golden.pieces(data, 4, golden.CYCLE_A)
    assert b"".join(parts) == data
    assert [len(p) for p in parts[:3]] == [4 * n for n in golden.CYCLE_A]
    assert all(len(p) % 4 == 0 for p in parts)


def test_messages_are_grouped_by_party_and_telephony_in_arrival_order():
    messages = [{"type": "ready"}, {"type": "info", "party": "b"}, {"type": "telephony", "event": "dtmf"},
                {"type": "info", "party": "a"}, {"type": "window", "party": "b", "index": 0},
                {"type": "window", "party": "a", "index": 0}, {"type": "summary"}]
    groups = golden.group_messages(messages)
    assert list(groups) == ["-", "b", "telephony", "a"]
    assert [m["type"] for m in groups["-"]] == ["ready", "summary"]
    assert [m["type"] for m in groups["a"]] == ["info", "window"]


def test_normalization_touches_only_clocks_paths_and_ports(tmp_path):
    norm = golden.Normalizer(tmp_path, 4242)
    obj = {"started_at": "2026-01-01T00:00:00", "ended_at": None, "time": 1.25, "timestamp": "x",
           "source": f"{tmp_path}/a.wav", "url": "ws://127.0.0.1:4242/ws", "scores": [0.1, 0.2]}
    assert norm(obj) == {"started_at": golden.VOLATILE, "ended_at": None, "time": 1.25, "timestamp": golden.VOLATILE,
                         "source": "$WORK/a.wav", "url": "ws://127.0.0.1:$PORT/ws", "scores": [0.1, 0.2]}
    text = golden.canonical({"b": 1, "a": [0.30000000000000004]})
    assert text.index('"a"') < text.index('"b"') and json.loads(text)["a"][0] == 0.30000000000000004


def test_metrics_keep_counts_and_drop_clocks():
    text = "\n".join([
        "# HELP emostream_events_total Events emitted", "# TYPE emostream_events_total counter",
        'emostream_events_total{type="window"} 3.0', 'emostream_events_created{type="window"} 1.7e9',
        "# HELP emostream_batch_seconds Forward pass wall time", "emostream_batch_seconds_sum 0.25",
    ])
    assert golden.deterministic_metrics(text) == [
        "# HELP emostream_events_total Events emitted", "# TYPE emostream_events_total counter",
        'emostream_events_total{type="window"} 3.0',
    ]
