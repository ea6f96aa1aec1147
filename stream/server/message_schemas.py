"""The JSON Schema of every WebSocket message of `/ws/stream` and `/ws/monitor`, served at `/schemas/messages.json`.

Each schema is built from the code that makes or reads the message: the `start` fields and limits of
stream.protocol.native, the event dataclasses of stream.engine.events, the monitor's SessionState
fields (stream.server.monitor_feed.STATE_FIELDS), the alert kinds, the error codes and session
statuses of stream.protocol.codes. The schemas list exactly the fields the server sends today
(`additionalProperties: false`), so a test that validates a real server's messages against them
fails when a field is added to one side only; clients should still ignore fields they do not know.

`x-endpoints` maps each endpoint's messages by direction and `type` to their schema; the
`<endpoint>.client` and `<endpoint>.server` definitions are each direction's union.
"""

from __future__ import annotations

from dataclasses import MISSING, fields

from stream.engine.events import EVENT_TYPES
from stream.protocol.codes import MONITOR_ERRORS, STATUSES, STREAM_ERRORS
from stream.protocol.native import (
    ENCODINGS,
    MAX_CONTEXT_CHARS,
    MAX_METADATA_BYTES,
    PARTY_RE,
    PROTOCOL_VERSION,
    RESUME_TOKEN_RE,
    SESSION_ID_RE,
    WHOLE_SESSION,
)
from vad import INPUT_RATES

from .alerts import ALERT_KINDS
from .monitor_feed import MAX_SUBSCRIPTIONS, STATE_FIELDS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
PATH = "/schemas/messages.json"
RENAMED = {"from_emotion": "from", "to_emotion": "to"}  # `to_dict`'s names of Transition's fields
SESSION_EVENTS = tuple(EVENT_TYPES)  # info, window, segment, transition, dual_emotion, review


def _ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _message(kind: str, description: str, properties: dict, required: tuple = ()) -> dict:
    """An object message of one `type`: exactly these fields."""
    return {"type": "object", "description": description,
            "properties": {"type": {"const": kind}, **properties},
            "required": ["type", *required], "additionalProperties": False}


def _field_schema(annotation: str) -> dict:
    """JSON Schema of one event field's annotation (the few the events use)."""
    kinds = [a.strip() for a in annotation.split("|")]
    kind = next(k for k in kinds if k != "None")
    schema = {
        "int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"},
        "str": {"type": "string"},
        "tuple[str, ...]": {"type": "array", "items": {"type": "string"}},
        "tuple[str, str]": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        "Mapping[str, float]": {"type": "object", "additionalProperties": {"type": "number"}},
        "Mapping[str, object]": {"type": "object"},
    }.get(kind)
    if schema is None:  # a new field type in stream.engine.events: teach this module its schema
        raise TypeError(f"no JSON Schema for an event field of type {annotation!r}")
    return _nullable(schema) if "None" in kinds else schema


def event_schema(kind: str) -> dict:
    """An analyzer event as a session message: its dataclass's fields, `session_id`, and `party` in a split session."""
    cls = EVENT_TYPES[kind]
    properties = {
        "session_id": {"type": "string"},
        "party": {"type": "string", "pattern": f"^{PARTY_RE.pattern}$",
                  "description": "the party whose event it is, in a split session only"},
        "replay": {"const": True, "description": "only in a replayed session's messages"},
    }
    required = ["session_id"]
    for f in fields(cls):
        key = RENAMED.get(f.name, f.name)
        properties[key] = _field_schema(f.type if isinstance(f.type, str) else f.type.__name__)
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(key)
    doc = (cls.__doc__ or kind).strip().splitlines()[0]
    return _message(kind, f"{doc} (docs/events.md)", properties, tuple(required))


def _start() -> dict:
    name = {"type": "string", "pattern": f"^{PARTY_RE.pattern}$", "not": {"const": WHOLE_SESSION}}
    return _message("start", "the first message: what the audio is", {
        "sample_rate": {"enum": list(INPUT_RATES)},
        "encoding": {"enum": list(ENCODINGS)},
        "channels": {"type": "integer", "minimum": 1, "default": 1, "description": "up to the server's maximum (2)"},
        "session_id": _nullable({"type": "string", "pattern": f"^{SESSION_ID_RE.pattern}$"}),
        "context": _nullable({"type": "string", "maxLength": MAX_CONTEXT_CHARS}),
        "metadata": _nullable({"type": "object", "description": f"at most {MAX_METADATA_BYTES} bytes as JSON"}),
        "split_channels": {"type": "boolean", "default": False},
        "parties": _nullable({"type": "array", "items": name, "minItems": 1, "uniqueItems": True}),
        "resume": {"type": "boolean", "default": False,
                   "description": "continue `session_id`, whose connection dropped within `--resume-seconds`"},
        "resume_token": {"type": "string", "pattern": f"^{RESUME_TOKEN_RE.pattern}$",
                         "description": "with `resume`: the `resume_token` of that session's `ready`"},
    }, ("sample_rate", "encoding"))


def _stats() -> dict:
    party = {"type": "object", "additionalProperties": False,
             "required": ["duration_seconds", "events", "current_emotion"],
             "properties": {"duration_seconds": {"type": "number"}, "events": _ref("EventCounts"),
                            "current_emotion": _nullable({"type": "string"})}}
    return {"type": "object", "additionalProperties": False, "description": "what a session did, when it ended",
            "required": ["session_id", "status", "duration_seconds", "events", "overloaded"],
            "properties": {
                "session_id": {"type": "string"},
                "status": {"enum": list(STATUSES), "description": "how it ended (docs/protocol.md, Session statuses)"},
                "duration_seconds": {"type": "number", "description": "seconds of audio received"},
                "events": _ref("EventCounts"),
                "overloaded": {"type": "boolean"},
                "parties": {"type": "object", "additionalProperties": party, "description": "a split session's, by party"},
                "replay": {"const": True}, "replay_of": {"type": "string"},
            }}


def _session_state() -> dict:
    state = {
        "session_id": {"type": "string"},
        "source": _nullable({"type": "string"}),
        "started_at": _nullable({"type": "string", "format": "date-time"}),
        "context": _nullable({"type": "string"}),
        "profile": _nullable({"type": "string"}),
        "metadata": {"type": "object"},
        "parties": {"type": "array", "items": {"type": "string"}},
        "replay": {"type": "boolean"},
        "random_weights": {"type": "boolean"},
        "planted": _nullable({"type": "string"}),
    }
    missing = set(STATE_FIELDS) ^ set(state)
    if missing:  # monitor_feed.STATE_FIELDS changed: describe its fields here
        raise TypeError(f"SessionState fields without a schema, or gone: {sorted(missing)}")
    party_state = _nullable({"type": "object", "additionalProperties": False,
                             "required": ["emotion", "score", "time"],
                             "properties": {"emotion": _nullable({"type": "string"}),
                                            "score": _nullable({"type": "number"}),
                                            "time": _nullable({"type": "number"})}})
    return {"type": "object", "additionalProperties": False, "description": "a live session as a monitor sees it",
            "required": [*STATE_FIELDS, "state", "alerts", "open_alerts"],
            "properties": {**state,
                           "state": {"type": "object", "additionalProperties": party_state,
                                     "description": f"per party (\"{WHOLE_SESSION}\" when unsplit): its latest window"},
                           "alerts": {"type": "integer", "minimum": 0},
                           "open_alerts": {"type": "integer", "minimum": 0}}}


def _alert() -> dict:
    return {"type": "object", "additionalProperties": False,
            "required": ["id", "session_id", "seq", "kind", "party", "stream_time", "text", "at", "state", "ack"],
            "properties": {
                "id": {"type": "string", "description": "<session_id>#<n>"},
                "session_id": {"type": "string"}, "seq": {"type": "integer", "minimum": 1},
                "kind": {"enum": list(ALERT_KINDS)}, "party": _nullable({"type": "string"}),
                "stream_time": _nullable({"type": "number"}), "text": {"type": "string"},
                "at": {"type": "string", "format": "date-time"}, "state": {"enum": ["open", "acknowledged"]},
                "ack": _nullable({"type": "object", "description": "by (credential name), at, note, assignee"}),
            }}


def _error(codes, extra: dict | None = None) -> dict:
    return _message("error", "a failure; the offending message was ignored unless the close that follows says "
                             "otherwise (docs/protocol.md, Error codes)",
                    {"code": {"enum": sorted({e.code for e in codes})}, "message": {"type": "string", "maxLength": 500},
                     **(extra or {})}, ("code", "message"))


def build() -> dict:
    """The whole document: every message's schema under `$defs`, and `x-endpoints`."""
    defs: dict[str, dict] = {
        "start": _start(),
        "stop": _message("stop", "ends the audio: final events, `summary`, close 1000", {}),
        "ready": _message("ready", "the session runs: send audio", {
            "session_id": {"type": "string"}, "protocol": {"const": PROTOCOL_VERSION},
            "parameters": {"type": "object", "description": "the analyzer's settings (the info event's parameters)"},
            "parties": {"type": "array", "items": {"type": "string"}, "description": "a split session's, in channel order"},
            "resume_token": {"type": "string", "description": "what a `start` with `resume: true` presents to continue "
                                                              "this session after its connection dropped"},
            "resumed": {"type": "object", "additionalProperties": False, "required": ["gap_seconds", "received_seconds"],
                        "description": "on a resumed session: how long it waited, how much audio it had",
                        "properties": {"gap_seconds": {"type": "number"}, "received_seconds": {"type": "number"}}},
        }, ("session_id", "protocol", "parameters")),
        **{kind: event_schema(kind) for kind in SESSION_EVENTS},
        "overload": _message("overload", "a warning: analysis is behind", {
            "message": {"type": "string"}, "queue_depth": {"type": "integer", "minimum": 0},
            "session_id": {"type": "string"}, "replay": {"const": True},
        }, ("message", "queue_depth")),
        "summary": _message("summary", "the last message of a session", {
            "session_id": {"type": "string"}, "stats": _ref("Stats"), "replay": {"const": True},
        }, ("session_id", "stats")),
        "error": _error(STREAM_ERRORS),
        "subscribe": _message("subscribe", f"follow one live session in full (at most {MAX_SUBSCRIPTIONS})",
                              {"session_id": {"type": "string", "minLength": 1, "maxLength": 256}}, ("session_id",)),
        "unsubscribe": _message("unsubscribe", "stop following it",
                                {"session_id": {"type": "string", "minLength": 1, "maxLength": 256}}, ("session_id",)),
        "snapshot": _message("snapshot", "the first message: every live session and the open alerts", {
            "sessions": {"type": "array", "items": _ref("SessionState")},
            "alerts": {"type": "array", "items": _ref("Alert"), "maxItems": 200},
        }, ("sessions", "alerts")),
        "session_started": _message("session_started", "a session started", {
            "session": _ref("SessionState"),
            "info": {"type": "object", "additionalProperties": _ref("info"),
                     "description": f"each party's `info` event, by party (\"{WHOLE_SESSION}\" when unsplit)"},
        }, ("session", "info")),
        "session_ended": _message("session_ended", "a session ended", {
            "session_id": {"type": "string"}, "summary": _nullable(_ref("Stats")),
        }, ("session_id", "summary")),
        "alert": _message("alert", "an alert was raised", {"alert": _ref("Alert")}, ("alert",)),
        "alert_acknowledged": _message("alert_acknowledged", "an alert was acknowledged", {"alert": _ref("Alert")},
                                       ("alert",)),
        "digest": _message("digest", "at most once a second: the sessions whose state or alerts changed", {
            "sessions": {"type": "object", "additionalProperties": _ref("Change")},
        }, ("sessions",)),
        "batch": _message("batch", "deltas held back beyond the few sent at once each second, in order, with the next tick", {
            "messages": {"type": "array", "minItems": 1, "items": {"oneOf": [
                _ref(k) for k in ("session_started", "session_ended", "alert", "alert_acknowledged")]}},
        }, ("messages",)),
        "subscribed": _message("subscribed", "the answer to `subscribe`: the session's recent messages, oldest first", {
            "session_id": {"type": "string"},
            "events": {"type": "array", "items": _ref("monitor.session_message")},
        }, ("session_id", "events")),
        "unsubscribed": _message("unsubscribed", "the answer to `unsubscribe`", {"session_id": {"type": "string"}},
                                 ("session_id",)),
        "monitor_error": _error(MONITOR_ERRORS, {"session_id": {"type": "string"}}),
        "telephony": _message("telephony", "a Twilio `mark` or `dtmf`, an AudioHook gap, or a stream resumed after its connection dropped "
                              "(`reconnected`), for monitors that follow the "
                              "call", {
            "session_id": {"type": "string"},
            "event": {"enum": ["mark", "dtmf", "paused", "resumed", "discarded", "reconnected"]},
            "gap_seconds": {"type": "number"}, "received_seconds": {"type": "number"},
            "name": {"type": "string"}, "digit": {"type": "string"}, "track": {"type": "string"},
            "time": {"type": "number"}, "position": {"type": "number"}, "start": {"type": "number"},
            "discarded": {"type": "number"},
            "replay": {"const": True},
        }, ("session_id", "event")),
        # parts
        "EventCounts": {"type": "object", "propertyNames": {"enum": list(EVENT_TYPES)},
                        "additionalProperties": {"type": "integer", "minimum": 0}},
        "Stats": _stats(),
        "SessionState": _session_state(),
        "Alert": _alert(),
        "Change": {"type": "object", "additionalProperties": False, "description": "what changed in one session",
                   "properties": {
                       "s": {"type": "object", "description": "[emotion, score, time] of each party whose state changed",
                             "additionalProperties": {"type": "array", "prefixItems": [
                                 {"type": "string"}, {"type": "number"}, {"type": "number"}],
                                 "minItems": 3, "maxItems": 3}},
                       "a": {"type": "integer", "minimum": 0, "description": "alerts raised so far"},
                       "o": {"type": "integer", "minimum": 0, "description": "of which open"}}},
    }
    endpoints = {
        "/ws/stream": {
            "client": {"start": "start", "stop": "stop"},
            "server": {k: k for k in ("ready", *SESSION_EVENTS, "overload", "summary", "error")},
            "binary": "client to server only: audio samples in the start's encoding (docs/protocol.md, Audio)",
        },
        "/ws/monitor": {
            "client": {"subscribe": "subscribe", "unsubscribe": "unsubscribe"},
            "server": {**{k: k for k in ("snapshot", "session_started", "session_ended", "alert", "alert_acknowledged",
                                         "batch", "digest", "subscribed", "unsubscribed")},
                       "error": "monitor_error",
                       **{k: k for k in (*SESSION_EVENTS, "overload", "telephony")}},
        },
    }
    defs["monitor.session_message"] = {"oneOf": [_ref(k) for k in (*SESSION_EVENTS, "overload", "telephony")]}
    for path, directions in endpoints.items():
        name = path.rsplit("/", 1)[1]
        for direction in ("client", "server"):
            defs[f"{name}.{direction}"] = {"oneOf": [_ref(d) for d in directions[direction].values()]}
    return {
        "$schema": DIALECT,
        "$id": PATH,
        "title": "emostream WebSocket messages",
        "description": "Every JSON message of /ws/stream and /ws/monitor (docs/protocol.md). `x-endpoints` maps "
                       "each endpoint's messages by direction and `type` to their definition in `$defs`.",
        "$defs": defs,
        "x-endpoints": {path: {direction: ({t: f"#/$defs/{d}" for t, d in by_type.items()}
                                           if isinstance(by_type, dict) else by_type)
                               for direction, by_type in directions.items()} for path, directions in endpoints.items()},
    }


def schema_for(document: dict, endpoint: str, direction: str, kind: str) -> dict | None:
    """The schema of one message (`document`: `build()`'s), as a standalone schema; None for an unknown type."""
    ref = document["x-endpoints"][endpoint][direction].get(kind)
    if ref is None:
        return None
    return {"$schema": DIALECT, "$defs": document["$defs"], "$ref": ref}


__all__ = ["PATH", "build", "event_schema", "schema_for"]
