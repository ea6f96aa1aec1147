"""The `/ws/replay` protocol, sans I/O: replay_start -> events -> stop, every event checked against its type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream.decision.rules import DualEmotion, Review
from stream.engine.events import Info, Segment, Transition, Window, to_dict
from stream.protocol.closing import CloseCode
from stream.protocol.native import ERROR_CODES, ProtocolError, tagged
from stream.protocol.replay import (
    MAX_EVENTS_PER_MESSAGE,
    REPLAY_ERROR_CODES,
    ReplayStream,
    parse_replay_start,
)
from stream.protocol.wire import EndSession, OpenReplay, ReplayEvents

LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")
SCORES = {label: round(1 / 9, 6) for label in LABELS}


def info(party: str | None = None) -> dict:
    body = to_dict(Info("emotion2vec_plus_tiny", True, LABELS, {"sample_rate": 16000, "window": 0.4},
                        profile={"name": "general", "context": None, "logit_bias": {}}, planted="fear-disgust",
                        precision="float32"))  # fmt: skip
    return tagged(body, party)


def recorded_events(party: str | None = None) -> list[dict]:
    """One of each replayable event, as a recording's events.jsonl holds them."""
    events = [
        Window(0, 0, 0.0, 0.4, SCORES, SCORES, "neutral", 0.111111),
        Window(1, 0, 0.1, 0.5, SCORES, SCORES, "fearful", 0.5),
        Transition(0.1, 0.5, 0, "neutral", "fearful", False),
        Transition(0.3, 0.9, 0, "fearful", "disgusted", True),
        Segment(0, 0.0, 1.2, "fearful", 0.4, SCORES, SCORES, 9, {"emotion": "fearful", "withheld": None}),
        Review(0, 0.0, 1.2, "fearful", "disgusted", 0.03, "too close", evidence="pitch rose"),
        DualEmotion(0, 0.0, 1.2, ("fearful", "disgusted"), {"fearful": 0.5, "disgusted": 0.48}, 0.02, "both high"),
    ]
    return [tagged(to_dict(e), party) for e in events]


def start(parties=(), **session) -> str:
    fields = {"session_id": "call-7", "sample_rate": 8000, "encoding": "mulaw", "channels": 1, "context": "bank",
              "metadata": {"line": 3}, "source": "twilio", "started_at": "2024-05-01T10:00:00+00:00", **session}
    if parties:
        fields["parties"] = list(parties)
    return json.dumps({"type": "replay_start", "session": fields, "info": [info(p) for p in parties or (None,)]})


def events_message(events) -> str:
    return json.dumps({"type": "events", "events": events})


def code_of(call) -> str:
    with pytest.raises(ProtocolError) as caught:
        call()
    return caught.value.code


def test_a_replay_runs_start_events_stop_and_events_come_back_as_recorded():
    wire = ReplayStream()
    (opened,) = wire.handle(start(), None)
    assert isinstance(opened, OpenReplay)
    assert (opened.replay_of, opened.source, opened.parties, opened.echo) == ("call-7", "twilio", (), True)
    assert (opened.start.sample_rate, opened.start.encoding, opened.start.context) == (8000, "mulaw", "bank")
    assert opened.start.metadata == {"line": 3} and opened.start.session_id is None  # the server names replays
    assert [(p, to_dict(e)) for p, e in opened.infos] == [(None, info())]
    recorded = recorded_events()
    (action,) = wire.handle(events_message(recorded), None)
    assert isinstance(action, ReplayEvents)
    assert [body for _, body in action.events] == recorded  # exactly what was recorded
    assert {p for p, _ in action.events} == {None}
    assert wire.handle('{"type": "stop"}', None) == [EndSession(reply=True)] and wire.done
    assert code_of(lambda: wire.handle(events_message(recorded), None)) == "already_stopped"


def test_a_split_recording_keeps_each_partys_events():
    wire = ReplayStream()
    (opened,) = wire.handle(start(("caller", "agent"), channels=2), None)
    assert opened.parties == ("caller", "agent") and [p for p, _ in opened.infos] == ["caller", "agent"]
    mixed = recorded_events("caller")[:3] + recorded_events("agent")[:2]
    (action,) = wire.handle(events_message(mixed), None)
    assert action.events == tuple((e["party"], e) for e in mixed)
    # A party the session does not have, or none at all, is refused.
    assert code_of(lambda: wire.handle(events_message(recorded_events("boss")[:1]), None)) == "bad_event"
    assert code_of(lambda: wire.handle(events_message(recorded_events()[:1]), None)) == "bad_event"


@pytest.mark.parametrize("change, code", [
    (lambda m: m.pop("session"), "bad_replay"),
    (lambda m: m.update(extra=1), "bad_replay"),
    (lambda m: m["session"].update(audio_kept=True), "bad_replay"),
    (lambda m: m["session"].pop("session_id"), "bad_replay"),
    (lambda m: m["session"].update(session_id="../etc"), "bad_replay"),
    (lambda m: m["session"].update(sample_rate=11025), "bad_replay"),
    (lambda m: m["session"].update(encoding="opus"), "bad_replay"),
    (lambda m: m["session"].update(metadata=[1]), "bad_replay"),
    (lambda m: m["session"].update(parties=["all"]), "bad_replay"),
    (lambda m: m["session"].update(source="a/b"), "bad_replay"),
    (lambda m: m.update(info=[]), "bad_replay"),
    (lambda m: m.update(info=[{"type": "window"}]), "bad_replay"),
    (lambda m: m["info"][0].pop("model_id"), "bad_replay"),
    (lambda m: m["info"][0].update(labels="angry"), "bad_replay"),
    (lambda m: m.update(echo="yes"), "bad_replay"),
])  # fmt: skip
def test_bad_replay_starts_say_what_is_wrong_and_a_corrected_one_works(change, code):
    wire = ReplayStream()
    message = json.loads(start())
    change(message)
    with pytest.raises(ProtocolError) as caught:
        wire.handle(json.dumps(message), None)
    assert caught.value.code == code and caught.value.message
    (opened,) = wire.handle(start(), None)  # the state did not move: a corrected start is taken
    assert isinstance(opened, OpenReplay)


def _with(body: dict, **changes) -> dict:
    return {**body, **changes}


@pytest.mark.parametrize("bad", [
    "not an object",
    {"type": "info"},  # info events travel in replay_start
    {"type": "overload", "message": "x", "queue_depth": 1},
    _with(recorded_events()[0], extra=1),
    {k: v for k, v in recorded_events()[0].items() if k != "end"},
    _with(recorded_events()[0], index="0"),
    _with(recorded_events()[0], scores={"angry": "high"}),
    _with(recorded_events()[0], dominant_score=True),
    _with(recorded_events()[0], start=-1.0),
    _with(recorded_events()[0], party="caller"),  # an unsplit session's events name no party
    _with(recorded_events()[2], flagged="yes"),
    _with(recorded_events()[5], evidence=7),
    _with(recorded_events()[6], emotions=["fearful"]),
    _with(recorded_events()[4], decision=[1, 2]),
])  # fmt: skip
def test_an_events_message_with_one_bad_event_is_refused_whole(bad):
    wire = ReplayStream()
    wire.handle(start(), None)
    good = recorded_events()
    with pytest.raises(ProtocolError) as caught:
        wire.handle(events_message(good[:3] + [bad] + good[3:]), None)
    assert caught.value.code == "bad_event" and "events[3]" in caught.value.message
    assert wire.events == 0  # nothing of it was taken
    (action,) = wire.handle(events_message(good), None)  # the session goes on
    assert len(action.events) == len(good) and wire.events == len(good)


def test_message_shapes_and_order():
    wire = ReplayStream(max_message_bytes=10_000)
    assert code_of(lambda: wire.handle(None, b"\x00\x01")) == "text_expected"
    assert code_of(lambda: wire.handle("[1]", None)) == "bad_json"
    assert code_of(lambda: wire.handle('{"type": "start"}', None)) == "unknown_type"
    assert code_of(lambda: wire.handle(events_message(recorded_events()), None)) == "not_started"
    assert code_of(lambda: wire.handle('{"type": "stop"}', None)) == "not_started"
    assert code_of(lambda: wire.handle("x" * 10_001, None)) == "message_too_large"
    wire.handle(start(), None)
    assert code_of(lambda: wire.handle(start(), None)) == "already_started"
    assert code_of(lambda: wire.handle('{"type": "events", "events": []}', None)) == "bad_event"
    assert code_of(lambda: wire.handle('{"type": "events", "events": {}}', None)) == "bad_event"
    assert code_of(lambda: wire.handle('{"type": "events", "events": [], "more": 1}', None)) == "bad_event"
    assert code_of(lambda: wire.handle('{"type": "stop", "now": true}', None)) == "bad_message"
    wire.refused()  # the server refused the start (full): another may come
    assert isinstance(wire.handle(start(), None)[0], OpenReplay)


def test_counts_and_times_are_bounded():
    wire = ReplayStream(max_seconds=60.0, max_events=10)
    wire.handle(start(), None)
    window = recorded_events()[0]
    too_many = [window] * (MAX_EVENTS_PER_MESSAGE + 1)
    assert code_of(lambda: wire.handle(events_message(too_many), None)) == "bad_event"
    late = _with(window, start=60.5, end=60.9)
    with pytest.raises(ProtocolError) as caught:
        wire.handle(events_message([late]), None)
    assert caught.value.code == "session_too_long"
    verdict = wire.fail(caught.value, started=True)  # it ends the session, after its summary
    assert verdict.close == CloseCode.POLICY and verdict.finish_first and verdict.reply["code"] == "session_too_long"
    wire.handle(events_message([window] * 10), None)
    assert code_of(lambda: wire.handle(events_message([window]), None)) == "session_too_long"


def test_errors_that_leave_the_session_going_close_nothing():
    wire = ReplayStream()
    for code in ("bad_event", "bad_replay", "text_expected", "not_started"):
        verdict = wire.fail(ProtocolError(code, "x"), started=True)
        assert verdict.close is None and verdict.reply == {"type": "error", "code": code, "message": "x"}


def test_parse_replay_start_takes_a_recordings_session_json_fields():
    message = json.loads(start())
    opened = parse_replay_start(message)
    assert opened.started_at == "2024-05-01T10:00:00+00:00" and opened.start.channels == 1


def test_replay_error_codes_are_documented_and_new():
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for code in REPLAY_ERROR_CODES:
        assert f"`{code}`" in doc and code not in ERROR_CODES, code
