"""Every code a client of the live server can read, in one place: the wire contract's vocabulary.

- `STREAM_ERRORS`: the `error` codes of `/ws/stream` and `/ws/twilio`, each with the close that
  follows it (the close frame's reason is the code); `REPLAY_ERRORS`, those `/ws/replay` adds;
  `MONITOR_ERRORS`, those of `/ws/monitor` (which never close).
- `CLOSES`: what each WebSocket close code means and what a client should do; `CLOSE_ONLY`, the
  reasons of closes that come without an `error` (the client would not read one).
- `HTTP_ERRORS`: the `code` of every HTTP error body, with its statuses.
- `STATUSES`: how a session ended (`summary.stats.status`, `session.json`).

The protocols take their codes from here (`stream.protocol.native.ERROR_CODES`, `CLOSING_ERRORS`),
and the tables of docs/protocol.md and docs/http-api.md are written from here
(`python -m stream.server.contract --write`), so code and documents cannot drift apart.
Texts are Markdown, as the documents show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .closing import LOST, CloseCode
from .limits import REPLAY_BEFORE_START, STREAM_BEFORE_START, TWILIO_BEFORE_START


@dataclass(frozen=True)
class SocketError:
    """One `error` code of a WebSocket endpoint: when it is sent, and the close that follows it (None: none)."""

    code: str
    when: str
    close: CloseCode | None = None
    close_text: str | None = None  # the table's close column where the code alone does not say it
    sometimes: CloseCode | None = None  # a close that follows only in some cases (`close_text` says which)


@dataclass(frozen=True)
class HttpError:
    """One `code` of an HTTP error body, and the statuses it comes with."""

    code: str
    statuses: tuple[int, ...]
    when: str


STREAM_ERRORS = (
    SocketError("bad_json", "a text message is not a JSON object (not JSON, an array, a string, `NaN`)"),
    SocketError("unknown_type", "a text message's `type` is missing or not `start` / `stop`"),
    SocketError("bad_start", "a `start` field is missing, unknown, of the wrong type or too long (`session_id`, "
                "`context`, `metadata`), `metadata` nested deeper than 16 or holding numbers JSON cannot store "
                "(`1e400`), or text with a lone surrogate"),
    SocketError("unsupported_rate", "`sample_rate` is not 8000, 16000, 32000, 44100 or 48000"),
    SocketError("unsupported_encoding", "`encoding` is not `pcm_s16le`, `pcm_f32le` or `mulaw`"),
    SocketError("unsupported_channels", "`channels` is below 1 or above the server's maximum"),
    SocketError("bad_split", "`split_channels` with `channels: 1`: there is nothing to split"),
    SocketError("bad_parties", "`parties` is not a list of distinct names (1–32 of `A–Z a–z 0–9 _ -`, not `all`), "
                "comes without `split_channels`, or names more or fewer parties than `channels`"),
    SocketError("session_in_use", "`session_id` names a running or recorded session: choose another, or leave it "
                "out (ids starting `twilio-`, `audiohook-`, `vonage-`, `jambonz-` or `audiofork-` are the telephony "
                "connectors': `bad_start`)"),
    SocketError("server_full", "the server already runs `--max-sessions` streams, or `--max-unstarted` sockets wait "
                "for their `start`: checked at connect (the `error` is the first message, then the close) and at "
                "`start`", CloseCode.TRY_AGAIN),
    SocketError("start_timeout", "no valid `start` within `--start-timeout` seconds (default 10) of connecting",
                CloseCode.POLICY),
    SocketError("too_many_messages", f"more than {STREAM_BEFORE_START} messages before a valid `start` (`/ws/twilio`: "
                f"{TWILIO_BEFORE_START} before an authenticated one; `/ws/replay`: {REPLAY_BEFORE_START} before its "
                "`replay_start`)", CloseCode.POLICY),
    SocketError("recording_failed", "the server could not write the recording (disk full); the session ends and is "
                "marked in its `session.json`", CloseCode.INTERNAL),
    SocketError("resume_refused", "a `start` with `resume: true` for a session that is not waiting for its client "
                "(never was, ended, or its `--resume-seconds` passed), with a wrong `resume_token`, or in another "
                "format than the session's; the session is left as it was: send a new `start`"),
    SocketError("already_started", "a second `start`"),
    SocketError("not_started", "`stop` before `start`"),
    SocketError("audio_before_start", "a binary message before `start`"),
    SocketError("already_stopped", "a message after `stop`, while the server finishes the session: it is not "
                "analyzed (after the `summary` nothing more is read)"),
    SocketError("binary_expected", "audio sent inside a JSON message (`{\"type\": \"audio\", ...}`): send binary "
                "messages"),
    SocketError("odd_byte_count", "a binary message that is not a whole number of frames; the message says both sizes"),
    SocketError("bad_audio", "`pcm_f32le` samples that are NaN or infinite"),
    SocketError("bad_message", "a `stop` with fields; a Twilio message missing a field or with one of the wrong type"),
    SocketError("message_too_large", "a message over `--max-message-bytes` (usually the WebSocket layer closes "
                "first, without an `error`)", CloseCode.TOO_BIG),
    SocketError("session_too_long", "the session reached `--max-session-seconds` of audio; its final events and "
                "`summary` come before the close", CloseCode.POLICY, "1008, after `summary`"),
    SocketError("unauthorized", "the token `<Parameter>` of a Twilio `start` is missing or wrong (`/ws/stream`, "
                "`/ws/monitor` and `/ws/replay` refuse the handshake instead: HTTP 401)", CloseCode.POLICY),
    SocketError("forbidden", "the token `<Parameter>` of a Twilio `start` is valid but lacks the *stream* right "
                "(handshakes: HTTP 403)", CloseCode.POLICY),
    SocketError("overload", "the model cannot keep up: its queue is full when the socket connects, or this "
                "session's unscored audio passed the server's limit", CloseCode.TRY_AGAIN),
    SocketError("internal", "the server failed (the details are in its log, not in the message)", CloseCode.INTERNAL),
    SocketError("text_expected", "a binary message on `/ws/twilio` or `/ws/replay`, where only JSON text is accepted"),
    SocketError("bad_payload", "a Twilio `media.payload` is not valid base64"),
    SocketError("twilio_format", "a Twilio stream that is not μ-law 8000 Hz mono, or whose tracks lack the analyzed "
                "one", CloseCode.POLICY),
    SocketError("unknown_track", "a Twilio track that is neither `inbound` nor `outbound` (in `start.tracks`, a "
                "`media.track` or the `track` `<Parameter>`), or a party `<Parameter>` for a track the stream does "
                "not send; in `start` the stream is closed", None, "1008 in `start`, else —", CloseCode.POLICY),
    SocketError("twilio_sequence", "Twilio messages out of order: `media`/`dtmf`/`mark`/`stop` before `start`, "
                "`start` twice, anything after `stop`, `sequenceNumber` not increasing, `streamSid` changing"),
)

REPLAY_ERRORS = (
    SocketError("bad_replay", "a `replay_start` field is missing, unknown or of the wrong type, or its `info` events "
                "do not match its parties; a corrected `replay_start` may follow"),
    SocketError("bad_event", "an `events` message that is not 1–1000 valid event bodies; the whole message is "
                "ignored"),
)

MONITOR_ERRORS = (
    SocketError("bad_json", "a text message that is not JSON"),
    SocketError("bad_message", "a binary message, JSON that is not an object with a string `type`, or a "
                "`subscribe` / `unsubscribe` without a `session_id` string (1–256 characters)"),
    SocketError("unknown_type", "a `type` other than `subscribe` and `unsubscribe`"),
    SocketError("unknown_session", "`subscribe` to a session that is not live (never was, or ended); carries "
                "`session_id`"),
    SocketError("too_many_subscriptions", "a subscription beyond the monitor's 8; carries `session_id`"),
)

# Closes that come without an `error` message, and their reason.
CLOSE_ONLY = {
    "too_slow": (CloseCode.TRY_AGAIN, "the client did not read: `--max-queue-bytes` of messages wait for it "
                 "(a monitor reconnects and starts again from a snapshot)"),
}


@dataclass(frozen=True)
class Close:
    """What a close code means and what a client should do."""

    meaning: str
    advice: str


CLOSES = {
    CloseCode.NORMAL: Close("normal: the session ended after `stop`, its final events and `summary` (empty reason)", "—"),
    CloseCode.POLICY: Close("policy violation", "do not retry unchanged"),
    CloseCode.TOO_BIG: Close("message too big", "send smaller messages"),
    CloseCode.INTERNAL: Close("internal error on the server", "retry; report it if it persists"),
    CloseCode.TRY_AGAIN: Close("try again later", "retry with back-off"),
}
LOST_CLOSE = Close("never sent: the connection dropped without a close frame (a browser also reports a refused "
                   "handshake so)", "reconnect")

HTTP_ERRORS = (
    HttpError("bad_host", (421,), "a `Host` the server does not answer (`--allowed-hosts`; DNS rebinding)"),
    HttpError("bad_origin", (403,), "a web page of another origin sent it (`--allowed-origins`); WebSocket "
              "handshakes too"),
    HttpError("method_not_allowed", (405,), "a method the route does not have; `Allow` lists those it has"),
    HttpError("unauthorized", (401,), "no credential, or a wrong one, on a route that needs a right "
              "(`WWW-Authenticate: Bearer`); WebSocket handshakes too"),
    HttpError("forbidden", (403,), "the credential is valid but lacks the route's right (WebSocket handshakes too); "
              "`audio_path` while the server has no `--audio-root`, or outside it"),
    HttpError("not_found", (404,), "no such route under `/api`, no such session, no such party of it, no audio "
              "(recorded with `--record events`), or no file at `audio_path`"),
    HttpError("party_required", (400,), "the audio of a split session without `?party=`; the message names its "
              "parties"),
    HttpError("session_live", (409,), "deleting a session that is live"),
    HttpError("bad_json", (400,), "a JSON body that is not a JSON object"),
    HttpError("bad_request", (400,), "a field of the wrong type or value, neither `file` nor `audio_path`, a form "
              "that cannot be read"),
    HttpError("bad_parties", (400, 422), "400: `parties` of the wrong shape; 422: names that repeat, `all`, not one "
              "per channel, or parties without `split_channels`"),
    HttpError("too_large", (413,), "a body over `--max-upload-bytes`"),
    HttpError("too_long", (413,), "audio over `--max-predict-seconds`, or over the decoded-bytes budget"),
    HttpError("unsupported_media_type", (415,), "a `Content-Type` other than JSON, `multipart/form-data` and "
              "`application/x-www-form-urlencoded`"),
    HttpError("unsupported_format", (422,), "a file that is not audio FFmpeg can read"),
    HttpError("unsupported_rate", (422,), "audio sampled above 192 kHz"),
    HttpError("unsupported_channels", (422,), "more channels than the server analyzes"),
    HttpError("decode_failed", (422,), "the decoder crashed or hung on the file"),
    HttpError("bad_audio", (422,), "audio that cannot be analyzed: empty, or one channel with `split_channels`"),
    HttpError("busy", (429,), "`--max-predicts` analyses are running (`Retry-After: 5`)"),
    HttpError("bad_filter", (400,), "a list's query parameter that is unknown or malformed (the message names it)"),
    HttpError("bad_cursor", (400,), "a `cursor` that is not a `next_cursor` the same list gave"),
    HttpError("catalog_unavailable", (503,), "the session catalog cannot be reached; try again"),
    HttpError("receiver_not_configured", (409,), "sending a dead webhook again whose receiver is no longer a "
              "`--webhook`"),
    HttpError("outbox_unavailable", (503,), "the webhook outbox file cannot be read; try again"),
)

STATUSES = {
    "live": "the session is running (a recording its crashed server left `live` is repaired at the next start)",
    "complete": "it ended with `stop` (or reached `--max-session-seconds`): every event and the `summary` were sent",
    "disconnected": "the socket closed without `stop` and was not resumed within `--resume-seconds`: what had "
                    "arrived is recorded, nothing more is analyzed or sent",
    "server_shutdown": "the server stopped while the session ran",
    "interrupted": "the server died while the session ran; a server starting on the recordings folder marked it",
    "overload": "the `overload` error ended it (1013)",
    "recording_failed": "the `recording_failed` error ended it (1011)",
    "message_too_large": "the `message_too_large` error ended it (1009)",
    "internal": "the `internal` error ended it (1011)",
}


def closing(errors=STREAM_ERRORS + REPLAY_ERRORS) -> dict[str, CloseCode]:
    """The codes whose `error` ends the connection, with their close code."""
    return {e.code: e.close for e in errors if e.close is not None}


def meanings(errors) -> dict[str, str]:
    """code -> when it is sent."""
    return {e.code: e.when for e in errors}


__all__ = ["CLOSES", "CLOSE_ONLY", "Close", "HTTP_ERRORS", "HttpError", "LOST", "LOST_CLOSE", "MONITOR_ERRORS",
           "REPLAY_ERRORS", "STATUSES", "STREAM_ERRORS", "SocketError", "closing", "meanings"]
