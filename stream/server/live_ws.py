"""WebSocket endpoints of the live server: native streams, Twilio Media Streams, monitors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.websockets import WebSocket

from models.errors import EmostreamError
from stream.protocol.native import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    ClientStream,
    ProtocolError,
    StartMessage,
    State,
    close_code,
    error,
    event_message,
    ready,
    summary,
)
from stream.protocol.twilio import (
    Audio,
    Dtmf,
    Marked,
    Started,
    Stopped,
    TwilioStream,
    session_id_for,
    start_message_for,
)

from .auth import access_for, credentials
from .outbox import Outbox
from .session import SessionSpec

log = logging.getLogger("emostream.server")

# Messages a socket may send before its session starts: enough to correct a few bad starts,
# too few to make the server hold or answer much for a client that never starts (or, on
# /ws/twilio, never authenticates).
MAX_MESSAGES_BEFORE_START = {"native": 32, "twilio": 8}


class _Connection:
    """The state of one socket's session, shared by the native and Twilio handlers."""

    def __init__(self, ws: WebSocket, outbox, source: str):
        self.ws = ws
        self.server = ws.app.state.server
        self.outbox = outbox
        self.source = source
        self.session = None
        self.ended = False
        self._deadline = time.monotonic() + self.server.settings.start_timeout
        self._before_start = 0

    async def receive(self) -> dict:
        """The next message; until a session starts, only a few and only for --start-timeout seconds."""
        if self.session is not None:
            return await self.ws.receive()
        self._before_start += 1
        if self._before_start > MAX_MESSAGES_BEFORE_START[self.source]:
            raise ProtocolError("too_many_messages",
                                f"more than {MAX_MESSAGES_BEFORE_START[self.source]} messages before a valid start")
        try:
            return await asyncio.wait_for(self.ws.receive(), max(0.0, self._deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ProtocolError(
                "start_timeout", f"no valid start within {self.server.settings.start_timeout:g} s"
            ) from None

    def start(self, spec: SessionSpec, sample_format: str):
        """Open the session, unless the server already runs --max-sessions."""
        limit = self.server.settings.max_sessions
        if len(self.server.sessions) >= limit:  # checked at start too: sockets may open first
            self.server.metrics.sessions_refused.labels("max_sessions").inc()
            raise ProtocolError("server_full", f"server full: {limit} sessions")
        self.session = self.server.open_session(spec, self.outbox, sample_format)
        return self.session

    def feed(self, samples, rate: int, party: str | None = None) -> bool:
        """Analyze samples (of one party, Twilio's tracks); False when the session reached its length limit."""
        self.session.feed(samples, party)
        self.server.metrics.audio_seconds.inc(len(samples) / rate)
        return self.session.received_seconds <= self.server.settings.max_session_seconds

    async def finish(self) -> dict:
        result = await self.session.finish()
        self.server.end_session(self.session, result)
        self.ended = True
        return result

    def abandon(self, reason: str) -> None:
        """Close the recording of a session that did not stop normally."""
        if self.session is not None and not self.ended:
            self.ended = True
            result = self.session.summary(reason)
            try:
                result = self.session.close(reason)
            except Exception:  # a recording that cannot be closed must still free its slot
                log.exception("closing session %s failed", self.session.spec.session_id)
            finally:
                self.server.end_session(self.session, result)

    def reject(self, exc: EmostreamError) -> None:
        """Answer one bad message with an error; the session goes on."""
        code = getattr(exc, "code", "error")
        self.server.metrics.errors.labels(code).inc()
        self.server.metrics.dropped.labels(code).inc()
        if self.outbox is not None:
            self.outbox.put(error(code, str(exc)))


async def _accept(ws: WebSocket):
    """Accept a stream connection, or close it with 1013 when the server cannot take one now."""
    await ws.accept()
    server = ws.app.state.server
    refusal = server.refusal()
    if refusal:
        await ws.close(code=CLOSE_TRY_AGAIN, reason=refusal)
        return None
    return server


async def native_stream(ws: WebSocket) -> None:
    """`/ws/stream`: start → ready → binary audio → stop → final events → summary → close."""
    server = await _accept(ws)
    if server is None:
        return
    conn = _Connection(ws, Outbox(ws, max_bytes=server.settings.max_queue_bytes), "native")
    protocol = ClientStream(max_message_bytes=server.settings.max_message_bytes)
    close = CLOSE_NORMAL, ""
    try:
        while close == (CLOSE_NORMAL, "") and protocol.state is not State.STOPPED:
            try:
                message = await conn.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    parsed = protocol.receive_text(message["text"])
                    if isinstance(parsed, StartMessage):
                        try:
                            _start_native(conn, parsed)
                        except EmostreamError:
                            protocol.refuse_start()  # the client may send a corrected start
                            raise
                    else:
                        conn.outbox.put(summary(conn.session.spec.session_id, await conn.finish()))
                elif message.get("bytes") is not None:
                    samples = protocol.receive_binary(message["bytes"])
                    if not conn.feed(samples, protocol.start.sample_rate):
                        raise ProtocolError(
                            "session_too_long", f"sessions are limited to {server.settings.max_session_seconds:g} s"
                        )
            except EmostreamError as exc:
                conn.reject(exc)
                code = close_code(exc.code)
                if code is not None:
                    if conn.session is not None and not conn.ended and exc.code == "session_too_long":
                        conn.outbox.put(summary(conn.session.spec.session_id, await conn.finish()))
                    close = code, exc.code
    except Exception:
        log.exception("session failed")
        close = CLOSE_INTERNAL, "internal"
    finally:
        conn.abandon("disconnected" if close[0] == CLOSE_NORMAL else close[1])
        await conn.outbox.drain()
        with contextlib.suppress(Exception):
            await ws.close(code=close[0], reason=close[1])


def _start_native(conn: _Connection, start: StartMessage) -> None:
    """Open the session a `start` message asks for and answer `ready` and `info`."""
    if start.session_id and start.session_id.startswith("twilio-"):
        raise ProtocolError("bad_start", "session ids starting with 'twilio-' belong to /ws/twilio streams")
    sid = conn.server.new_session_id(start.session_id)
    spec = SessionSpec(sid, start.sample_rate, start.encoding, start.channels, start.context,
                       dict(start.metadata), "native", start.party_names)
    session = conn.start(spec, "float32" if start.encoding == "pcm_f32le" else "int16")
    conn.outbox.put(ready(sid, session.core.config.describe(), spec.parties))
    for party, info in session.info_events.items():
        conn.outbox.put(event_message(sid, info, party))


async def twilio_stream(ws: WebSocket) -> None:
    """`/ws/twilio`: Twilio Media Streams (connected, start, media, mark, dtmf, stop).

    Twilio takes no analysis messages back, so events go to monitors, MQTT and the recording.
    """
    server = await _accept(ws)
    if server is None:
        return
    conn = _Connection(ws, None, "twilio")
    stream = TwilioStream()
    close = CLOSE_NORMAL, ""
    try:
        while close == (CLOSE_NORMAL, "") and not conn.ended:
            try:
                message = await conn.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    raise ProtocolError("text_expected", "Twilio Media Streams messages are JSON text")
                for event in stream.receive(message["text"]):
                    if isinstance(event, Started):
                        if ws.scope.get("state", {}).get("token_pending") and "stream" not in access_for(
                            credentials(server.settings), [event.token] if event.token else []
                        ).rights:
                            raise ProtocolError("unauthorized", "missing or wrong token <Parameter> in the Twilio start")
                        start = start_message_for(event, stream.parties)
                        spec = SessionSpec(server.new_session_id(session_id_for(event)), start.sample_rate, start.encoding,
                                           start.channels, start.context, dict(start.metadata), "twilio",
                                           tuple(stream.parties.values()))
                        conn.start(spec, "int16")
                    elif isinstance(event, Audio):
                        if not conn.feed(event.samples, conn.session.spec.sample_rate, event.party):
                            raise ProtocolError("session_too_long", "the call reached --max-session-seconds")
                    elif isinstance(event, (Marked, Dtmf)):
                        server.broadcast(
                            {"type": "telephony", "session_id": conn.session.spec.session_id,
                             "event": "mark" if isinstance(event, Marked) else "dtmf", **event.__dict__}
                        )
                    elif isinstance(event, Stopped):
                        await conn.finish()
            except EmostreamError as exc:
                log.warning("twilio stream: %s", exc)
                conn.reject(exc)
                code = close_code(exc.code)
                if code is None and conn.session is None:
                    code = CLOSE_POLICY  # nothing to analyze without a start the server took
                if code is not None:
                    close = code, exc.code
    except Exception:
        log.exception("twilio session failed")
        close = CLOSE_INTERNAL, "internal"
    finally:
        conn.abandon("disconnected" if close[0] == CLOSE_NORMAL else close[1])
        with contextlib.suppress(Exception):
            await ws.close(code=close[0], reason=close[1])


async def monitor(ws: WebSocket) -> None:
    """`/ws/monitor`: every session's events, plus session starts and ends, for dashboards."""
    await ws.accept()
    server = ws.app.state.server
    box = Outbox(ws, max_bytes=server.settings.max_queue_bytes)
    box.put({"type": "sessions", "sessions": server.live_sessions()})
    server.monitor.outboxes.add(box)
    try:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass  # monitors only listen
    finally:
        server.monitor.outboxes.discard(box)
        await box.drain()
