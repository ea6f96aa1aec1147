"""Split channels in the native protocol: `split_channels`, `parties`, their errors and decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.engine.events import Info
from stream.protocol.native import (
    ClientStream,
    ProtocolError,
    StartMessage,
    decode_audio,
    decode_frames,
    event_message,
    parse_client_text,
    ready,
)


def start(**fields) -> str:
    body = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2}
    body.update(fields)
    return json.dumps(body)


def code_of(text: str) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_client_text(text)
    return info.value.code


def test_split_start_round_trips_with_named_and_default_parties():
    named = parse_client_text(start(split_channels=True, parties=["caller", "counsellor"]))
    assert named.split_channels and named.party_names == ("caller", "counsellor")
    assert parse_client_text(json.dumps(named.to_dict())) == named
    default = parse_client_text(start(split_channels=True))
    assert default.party_names == ("0", "1") and default.to_dict()["split_channels"] is True
    mixed = parse_client_text(start())
    assert mixed.party_names == () and "split_channels" not in mixed.to_dict()
    assert parse_client_text(start(split_channels=False)).party_names == ()


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"channels": 1, "split_channels": True}, "bad_split", "channels: 1"),
        ({"split_channels": True, "parties": ["a", "b", "c"]}, "bad_parties", "3 parties for 2 channel"),
        ({"split_channels": True, "parties": ["a"]}, "bad_parties", "1 party for 2 channel"),
        ({"parties": ["a", "b"]}, "bad_parties", "split_channels"),
        ({"split_channels": True, "parties": ["a", "a"]}, "bad_parties", "distinct"),
        ({"split_channels": True, "parties": ["a", "all"]}, "bad_parties", "'all'"),
        ({"split_channels": True, "parties": ["a", "b/c"]}, "bad_parties", "'b/c'"),
        ({"split_channels": True, "parties": "ab"}, "bad_parties", "list"),
        ({"split_channels": "yes"}, "bad_start", "true or false"),
    ],
)
def test_bad_splits_get_a_clear_code(fields, code, words):
    with pytest.raises(ProtocolError) as info:
        parse_client_text(start(**fields))
    assert info.value.code == code and words in info.value.message


def test_split_stream_keeps_channels_apart():
    s = ClientStream()
    s.receive_text(start(split_channels=True, parties=["caller", "agent"]))
    pcm = np.array([[100, -7], [200, 9], [-300, 11]], dtype="<i2")
    frames = s.receive_binary(pcm.tobytes())
    assert frames.shape == (3, 2) and frames.dtype == np.int16
    assert frames[:, 0].tolist() == [100, 200, -300] and frames[:, 1].tolist() == [-7, 9, 11]
    # The mix is still what an unsplit stream gets.
    assert decode_audio(pcm.tobytes(), "pcm_s16le", 2).tolist() == [46, 104, -144]
    assert decode_frames(pcm.tobytes(), "pcm_s16le", 2).tolist() == pcm.tolist()
    with pytest.raises(ProtocolError) as info:
        s.receive_binary(b"\x00" * 6)
    assert info.value.code == "odd_byte_count"


def test_messages_name_the_party():
    info = Info("m", True, ("a",), {})
    assert event_message("s1", info, "caller") == {
        "type": "info", "session_id": "s1", "party": "caller", "model_id": "m", "random_weights": True,
        "labels": ["a"], "parameters": {}, "warning": None, "profile": None, "centroids": None,
        "planted": None, "precision": None,
    }
    assert "party" not in event_message("s1", info)
    assert ready("s1", {}, ("caller", "agent"))["parties"] == ["caller", "agent"]
    assert "parties" not in ready("s1", {})
    assert StartMessage(8000, "mulaw").party_names == ()
