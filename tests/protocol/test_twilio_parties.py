"""Twilio's two tracks as two parties, sans I/O: defaults, renaming, picking one, bad names."""

from __future__ import annotations

import pytest
from test_twilio import Call, chunks, tone

from stream.protocol import mulaw
from stream.protocol.native import ProtocolError
from stream.protocol.twilio import Audio, TwilioStream


def started(params: dict, tracks=("inbound", "outbound"), track=None) -> tuple[Call, TwilioStream]:
    call, s = Call(tracks=tracks), TwilioStream(track)
    s.receive(call.start(customParameters=params))
    return call, s


def code_of(params: dict, tracks=("inbound", "outbound")) -> tuple[str, str]:
    with pytest.raises(ProtocolError) as info:
        started(params, tracks)
    return info.value.code, info.value.message


def test_both_tracks_are_two_parties_caller_and_agent():
    call, s = started({})
    assert s.analyzed == ("inbound", "outbound") and s.parties == {"inbound": "caller", "outbound": "agent"}
    inbound, outbound = mulaw.encode(tone(0.2)), mulaw.encode(tone(0.2, freq=1000.0))
    audio: list[Audio] = []
    for a, b in zip(chunks(inbound), chunks(outbound), strict=True):
        audio += s.receive(call.media(a, "inbound")) + s.receive(call.media(b, "outbound"))
    assert [a.party for a in audio] == ["caller", "agent"] * 10
    by_party = {p: b"".join(mulaw.encode(a.samples) for a in audio if a.party == p) for p in ("caller", "agent")}
    assert by_party == {"caller": inbound, "agent": outbound}  # each track whole, in order, apart


def test_parameters_rename_the_parties_or_pick_one_track():
    _, s = started({"inbound_party": "caller", "outbound_party": "counsellor"})
    assert s.parties == {"inbound": "caller", "outbound": "counsellor"}
    call, s = started({"track": "outbound"})
    assert s.analyzed == ("outbound",) and s.parties == {}  # one track: an unsplit session as before
    assert s.receive(call.media(b"\x00", "inbound")) == []
    [a] = s.receive(call.media(b"\xff", "outbound"))
    assert a.party is None and a.track == "outbound"
    _, s = started({}, tracks=("inbound",))
    assert s.analyzed == ("inbound",) and s.parties == {}
    _, s = started({"track": "both"})
    assert s.parties == {"inbound": "caller", "outbound": "agent"}


@pytest.mark.parametrize(
    ("params", "tracks", "code", "words"),
    [
        ({"track": "sideways"}, ("inbound", "outbound"), "unknown_track", "inbound, outbound, both"),
        ({}, ("inbound", "sideways"), "unknown_track", "'sideways'"),
        ({"track": "inbound", "outbound_party": "agent"}, ("inbound", "outbound"), "unknown_track", "not analyzed"),
        ({"outbound_party": "agent"}, ("inbound",), "unknown_track", "not analyzed"),
        ({"track": "both"}, ("inbound",), "twilio_format", "outbound"),
        ({"inbound_party": "x", "outbound_party": "x"}, ("inbound", "outbound"), "bad_parties", "distinct"),
        ({"inbound_party": "a b"}, ("inbound", "outbound"), "bad_parties", "'a b'"),
    ],
)
def test_bad_track_choices_get_a_clear_code(params, tracks, code, words):
    got, message = code_of(params, tracks)
    assert got == code and words in message


def test_media_of_an_unknown_track_is_an_error_and_the_call_goes_on():
    call, s = started({})
    with pytest.raises(ProtocolError) as info:
        s.receive(call.media(b"\x00", "sideways"))
    assert info.value.code == "unknown_track"
    assert len(s.receive(call.media(b"\x00", "inbound"))) == 1
