"""Genesys AudioHook v2 (stream.protocol.audiohook), sans I/O: messages in, actions and replies out, no sockets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from audiohook_client import EXTERNAL, INTERNAL, ORG, STEREO, Client, duration, open_parameters

from stream.protocol import mulaw
from stream.protocol.audiohook import (
    MAX_AFTER_DISCONNECT,
    NULL_UUID,
    AudioHookState,
    AudioHookStream,
    Handshake,
    choose_media,
    parse_duration,
)
from stream.protocol.closing import CloseCode
from stream.protocol.native import ProtocolError
from stream.protocol.wire import EndSession, FeedAudio, Notice, OpenSession, Reply


def connect(refusal: str | None = None) -> tuple[AudioHookStream, Client]:
    client = Client()
    return AudioHookStream(Handshake(client.id, ORG, "corr-1", refusal)), client


def send(wire: AudioHookStream, client: Client, kind: str, parameters: dict | None = None, **override):
    """One client message -> the actions; the client sees every reply (and checks its numbering)."""
    actions = wire.handle(client.message(kind, parameters, **override), None)
    for action in actions:
        if isinstance(action, Reply):
            client.received(action.message)
    return actions


def failing(wire: AudioHookStream, client: Client, text: str | None = None, data: bytes | None = None):
    """A message the protocol refuses -> (its error code, the verdict); the client sees the `disconnect`."""
    with pytest.raises(ProtocolError) as caught:
        wire.handle(text, data)
    verdict = wire.fail(caught.value, started=False)
    if verdict.reply is not None:
        client.received(verdict.reply)
    return caught.value.code, verdict


def opened(media=(STEREO,), **extra):
    wire, client = connect()
    actions = send(wire, client, "open", open_parameters(media, **extra))
    return wire, client, actions


def test_open_is_answered_opened_with_the_stereo_pcmu_format_and_a_split_session():
    wire, client, actions = opened(customConfig={"site": "north", "internal_party": "counsellor"},
                                   inputVariables={"context": "crisis hotline", "queue": "care"})
    start_action, reply = actions
    assert isinstance(start_action, OpenSession) and isinstance(reply, Reply)
    assert reply.message == {"version": "2", "type": "opened", "seq": 1, "clientseq": 1, "id": client.id,
                             "parameters": {"media": [STEREO], "startPaused": False}}
    start = start_action.start
    assert (start.sample_rate, start.encoding, start.channels) == (8000, "mulaw", 2)
    assert start.session_id == f"audiohook-{client.id}" and start_action.parties == ("caller", "counsellor")
    assert start_action.sample_format == "int16" and start.context == "crisis hotline"
    meta = start.metadata["audiohook"]
    assert meta["conversation_id"] and meta["organization_id"] == ORG and meta["correlation_id"] == "corr-1"
    assert meta["custom_config"] == {"site": "north", "internal_party": "counsellor"}
    assert meta["input_variables"] == {"context": "crisis hotline", "queue": "care"}
    assert meta["parties"] == {"external": "caller", "internal": "counsellor"} and meta["language"] == "en-US"
    assert "+1-555" not in json.dumps(meta) and "John Doe" not in json.dumps(meta)  # no phone numbers, no name
    assert wire.state is AudioHookState.ACTIVE and not wire.done


@pytest.mark.parametrize(("offers", "chosen"), [
    ([{"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}, EXTERNAL, STEREO], STEREO),
    ([EXTERNAL, {**STEREO, "channels": ["internal", "external"]}], {**STEREO, "channels": ["internal", "external"]}),
    ([{**STEREO, "rate": 16000}, INTERNAL], INTERNAL),
    ([{**STEREO, "channels": ["external", "external"]}, {**STEREO, "format": "PCMA"}], None),
])
def test_the_server_picks_a_format_it_supports_from_those_offered(offers, chosen):
    media = choose_media(offers)
    assert (media.to_dict() if media else None) == chosen


def test_reversed_stereo_channels_name_their_parties_in_frame_order():
    wire, client, (start, reply) = opened(({**STEREO, "channels": ["internal", "external"]},))
    assert start.parties == ("agent", "caller")
    frame = np.array([[100, -200], [300, -400]], np.int16)  # column 0: internal (the agent)
    (feed,) = wire.handle(None, mulaw.encode(frame))
    assert np.array_equal(feed.samples, mulaw.decode(mulaw.encode(frame)).reshape(-1, 2))


def test_one_channel_is_one_unsplit_session():
    wire, client, (start, reply) = opened((EXTERNAL,))
    assert start.parties == () and start.start.channels == 1 and reply.message["parameters"]["media"] == [EXTERNAL]
    (feed,) = wire.handle(None, b"\xff\x00\x80")
    assert feed.samples.shape == (3,) and feed.party is None


def test_stereo_audio_is_decoded_into_frames_of_both_channels():
    wire, client, _ = opened()
    rng = np.random.default_rng(3)
    frames = rng.integers(-20000, 20000, size=(800, 2)).astype(np.int16)
    data = mulaw.encode(frames)  # interleaved: external, internal, external, ...
    (feed,) = wire.handle(None, client.audio(data, 2))
    assert isinstance(feed, FeedAudio) and feed.samples.dtype == np.int16 and feed.samples.shape == (800, 2)
    assert np.array_equal(feed.samples[:, 0], mulaw.decode(mulaw.encode(frames[:, 0])))
    assert np.array_equal(feed.samples[:, 1], mulaw.decode(mulaw.encode(frames[:, 1])))
    assert wire.samples == 800


def test_ping_is_answered_pong_and_numbered():
    wire, client, _ = opened()
    (pong,) = send(wire, client, "ping", {})
    assert pong.message["type"] == "pong" and pong.message["seq"] == 2 and pong.message["clientseq"] == 2
    (pong,) = send(wire, client, "ping", {"rtt": "PT0.045S"})
    assert pong.message["parameters"] == {} and pong.message["seq"] == 3 and wire.rtt == pytest.approx(0.045)


def test_pause_resume_and_discarded_are_notices_where_the_analysis_stands():
    wire, client, _ = opened()
    wire.handle(None, client.audio(bytes(16000), 2))  # 1 s of stereo
    (paused,) = send(wire, client, "paused", {})
    assert isinstance(paused, Notice) and paused.body == {"event": "paused", "position": 1.0, "time": 1.0}
    assert send(wire, client, "paused", {}) == []  # already paused: only a confirmation
    code, _ = failing(wire, client, data=bytes(320))
    assert code == "bad_message"  # no audio while paused; a fresh connection for the rest
    wire, client, _ = opened()
    wire.handle(None, client.audio(bytes(16000), 2))
    send(wire, client, "paused", {})
    client.position += 4.0
    (resumed,) = send(wire, client, "resumed", {"start": "PT1S", "discarded": "PT4S"})
    assert resumed.body == {"event": "resumed", "position": 5.0, "start": 1.0, "discarded": 4.0, "time": 1.0}
    assert send(wire, client, "resumed", {"start": "PT1S", "discarded": "PT0S"}) == []  # not paused
    (gap,) = send(wire, client, "discarded", {"start": "PT5S", "discarded": "PT0.5S"})
    assert gap.body == {"event": "discarded", "position": 5.0, "start": 5.0, "discarded": 0.5, "time": 1.0}
    assert len(wire.handle(None, client.audio(bytes(320), 2))) == 1  # audio again after `resumed`


def test_update_error_and_close():
    wire, client, _ = opened()
    assert send(wire, client, "update", {"language": "es-ES"}) == [] and wire.language == "es-ES"
    assert send(wire, client, "error", {"code": 429, "message": "rate limited", "retryAfter": "PT2S"}) == []
    assert wire.client_errors == [{"code": 429, "message": "rate limited"}]
    closed, end = send(wire, client, "close", {"reason": "end"})
    assert closed.message["type"] == "closed" and closed.message["parameters"] == {} and closed.message["seq"] == 2
    assert isinstance(end, EndSession) and end.reply is False and wire.done and wire.close_reason == "end"
    with pytest.raises(ProtocolError, match="after the session was closed") as caught:
        wire.handle(client.message("ping"), None)
    assert wire.fail(caught.value, True).reply is None  # nothing is said after `closed`


def test_the_connection_probe_opens_and_closes_without_a_session():
    wire, client, actions = opened(conversation=NULL_UUID)
    (reply,) = actions
    assert reply.message["type"] == "opened" and reply.message["parameters"]["media"] == [STEREO]
    assert wire.handle(None, bytes(320)) == []  # a probe's audio is not analyzed
    assert send(wire, client, "paused", {}) == []
    (closed,) = send(wire, client, "close", {"reason": "end"})
    assert closed.message["type"] == "closed" and wire.done


def test_a_refused_handshake_answers_open_with_disconnect_unauthorized_then_closes():
    wire, client = connect(refusal="wrong X-API-KEY")
    code, verdict = failing(wire, client, client.message("open", open_parameters()))
    assert code == "unauthorized" and verdict.close is None
    assert verdict.reply["type"] == "disconnect" and verdict.reply["seq"] == 1 and verdict.reply["clientseq"] == 1
    assert verdict.reply["parameters"] == {"reason": "unauthorized", "info": "unauthorized: wrong X-API-KEY"}
    assert wire.handle(None, bytes(320)) == []  # audio in flight: dropped
    (closed,) = send(wire, client, "close", {"reason": "disconnect"})
    assert closed.message["type"] == "closed" and closed.message["seq"] == 2 and wire.done


def test_an_open_for_another_organization_is_unauthorized():
    wire, client = connect()
    code, verdict = failing(wire, client, client.message("open", {**open_parameters(),
                                                                  "organizationId": "11111111-2222-3333-4444-555555555555"}))
    assert code == "unauthorized" and verdict.reply["parameters"]["reason"] == "unauthorized"


BAD_TEXT = [
    (lambda c: "{not json", "bad_json"),
    (lambda c: "[1, 2]", "bad_json"),
    (lambda c: c.message("hello"), "unknown_type"),
    (lambda c: c.message("pause"), "unknown_type"),  # the server's message, not the client's
    (lambda c: c.message("ping", version="1"), "bad_message"),
    (lambda c: c.message("ping", seq=c.seq + 5), "bad_message"),
    (lambda c: c.message("ping", serverseq=99), "bad_message"),
    (lambda c: c.message("ping", id="6a1bd7a4-3c2f-4e59-b7a8-1f9d0c2e4b51"), "bad_message"),
    (lambda c: c.message("ping", position="1.5 s"), "bad_message"),
    (lambda c: c.message("ping", parameters=[]), "bad_message"),
    (lambda c: c.message("ping", {"rtt": "fast"}), "bad_message"),
    (lambda c: c.message("open", open_parameters()), "already_started"),
    (lambda c: c.message("close", {"reason": "bored"}), "bad_message"),
    (lambda c: c.message("resumed", {"start": "PT1S"}), "bad_message"),
    (lambda c: c.message("update", {"language": 7}), "bad_message"),
    (lambda c: c.message("error", {"code": "E1", "message": "x"}), "bad_message"),
    (lambda c: "x" * 70000, "message_too_large"),
]


@pytest.mark.parametrize(("build", "code"), BAD_TEXT)
def test_each_bad_message_is_answered_disconnect_error_and_only_close_follows(build, code):
    wire, client, _ = opened()
    got, verdict = failing(wire, client, build(client))
    assert got == code and verdict.close is None
    reply = verdict.reply
    assert reply["type"] == "disconnect" and reply["parameters"]["reason"] == "error"
    assert reply["parameters"]["info"].startswith(f"{code}: ") and len(reply["parameters"]["info"]) <= 500
    assert wire.state is AudioHookState.DISCONNECTING
    assert wire.handle(None, bytes(320)) == [] and send(wire, client, "paused", {}) == []  # ignored now
    with pytest.raises(ProtocolError):
        wire.handle("{bad", None)
    assert wire.fail(ProtocolError("bad_json", "again"), True).reply is None  # one disconnect only
    client.seq = max(client.seq, wire.clientseq)  # the client's numbering goes on from what it sent
    closed, end = send(wire, client, "close", {"reason": "disconnect"})
    assert closed.message["type"] == "closed" and isinstance(end, EndSession) and wire.done


@pytest.mark.parametrize(("media", "data", "code"), [
    ((STEREO,), bytes(40001), "message_too_large"),
    ((STEREO,), bytes(321), "odd_byte_count"),
])
def test_bad_audio_frames_are_refused(media, data, code):
    wire, client, _ = opened(media)
    got, verdict = failing(wire, client, data=data)
    assert got == code and verdict.reply["parameters"]["reason"] == "error"


def test_audio_or_messages_before_open_are_refused():
    for build, code in ((lambda c: (None, bytes(320)), "audio_before_start"),
                        (lambda c: (c.message("paused"), None), "not_started")):
        wire, client = connect()
        got, verdict = failing(wire, client, *build(client))
        assert got == code and verdict.reply["type"] == "disconnect" and verdict.reply["seq"] == 1


@pytest.mark.parametrize("media", [
    [{"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}],
    [{**STEREO, "rate": 16000}],
    [],
])
def test_no_supported_format_is_refused_with_what_is_supported(media):
    wire, client = connect()
    code, verdict = failing(wire, client, client.message("open", open_parameters(media)))
    assert code == "unsupported_encoding" and "PCMU at 8000 Hz" in verdict.reply["parameters"]["info"]


def test_bad_parties_and_oversize_metadata_are_refused():
    wire, client = connect()
    code, _ = failing(wire, client, client.message("open", open_parameters(
        customConfig={"external_party": "agent", "internal_party": "agent"})))
    assert code == "bad_parties"
    wire, client = connect()
    code, verdict = failing(wire, client, client.message("open", open_parameters(customConfig={"blob": "x" * 9000})))
    assert code == "bad_start" and "customConfig" in verdict.reply["parameters"]["info"]


def test_a_refused_session_frees_the_opened_number():
    wire, client, _ = opened()
    wire.refused()  # the server could not open the session (full): `opened` was never sent
    verdict = wire.fail(ProtocolError("server_full", "server full: 1 sessions"), started=False)
    assert verdict.reply["seq"] == 1 and verdict.reply["parameters"]["info"] == "server_full: server full: 1 sessions"
    assert not wire.analyzing


def test_an_open_that_never_comes_is_disconnected_and_closed():
    wire, client = connect()
    verdict = wire.fail(ProtocolError("start_timeout", "no valid start within 10 s"), started=False)
    assert verdict.reply["type"] == "disconnect" and verdict.close == CloseCode.POLICY


def test_a_client_that_never_closes_after_disconnect_is_cut_off():
    wire, client, _ = opened()
    failing(wire, client, "{")
    for _ in range(MAX_AFTER_DISCONNECT):
        wire.handle(None, bytes(320))
    with pytest.raises(ProtocolError) as caught:
        wire.handle(None, bytes(320))
    assert caught.value.code == "too_many_messages" and wire.fail(caught.value, True).close == CloseCode.POLICY


def test_durations():
    assert [parse_duration(d, "x") for d in ("PT0S", "PT1.5S", "PT.25S", "PT12.S")] == [0.0, 1.5, 0.25, 12.0]
    assert duration(1.5) == "PT1.5S" and duration(0) == "PT0S"
    for bad in ("P1S", "PT-1S", "PT1M", "1.5", 1.5, None):
        with pytest.raises(ProtocolError):
            parse_duration(bad, "x")
