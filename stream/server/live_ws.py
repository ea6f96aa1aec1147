"""WebSocket endpoints of the live server: native streams, Twilio Media Streams, monitors."""

from __future__ import annotations

import contextlib
import logging

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

from .auth import token_ok
from .outbox import Outbox
from .session import SessionSpec

log = logging.getLogger("emostream.server")


class _Connection:
    """The state of one socket's session, shared by the native and Twilio handlers."""

    def __init__(self, ws: WebSocket, outbox):
        self.ws = ws
        self.server = ws.app.state.server
        self.outbox = outbox
        self.session = None
        self.ended = False

    def start(self, spec: SessionSpec, sample_format: str):
        self.session = self.server.open_session(spec, self.outbox, sample_format)
        return self.session

    def feed(self, samples, rate: int) -> bool:
        """Analyze samples; False when the session reached its length limit."""
        self.session.feed(samples)
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
            result = self.session.close(reason)
            self.server.end_session(self.session, result)
            self.ended = True

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
    conn = _Connection(ws, Outbox(ws))
    protocol = ClientStream(max_message_bytes=server.settings.max_message_bytes)
    close = CLOSE_NORMAL, ""
    try:
        while close == (CLOSE_NORMAL, "") and protocol.state is not State.STOPPED:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                if message.get("text") is not None:
                    parsed = protocol.receive_text(message["text"])
                    if isinstance(parsed, StartMessage):
                        _start_native(conn, parsed)
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
    sid = conn.server.new_session_id(start.session_id)
    spec = SessionSpec(sid, start.sample_rate, start.encoding, start.channels, start.context,
                       dict(start.metadata), "native")
    session = conn.start(spec, "float32" if start.encoding == "pcm_f32le" else "int16")
    conn.outbox.put(ready(sid, session.core.config.describe()))
    conn.outbox.put(event_message(sid, session.info_event))


async def twilio_stream(ws: WebSocket) -> None:
    """`/ws/twilio`: Twilio Media Streams (connected, start, media, mark, dtmf, stop).

    Twilio takes no analysis messages back, so events go to monitors, MQTT and the recording.
    """
    server = await _accept(ws)
    if server is None:
        return
    conn = _Connection(ws, None)
    stream = TwilioStream()
    close = CLOSE_NORMAL, ""
    try:
        while close == (CLOSE_NORMAL, "") and not conn.ended:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                if message.get("text") is None:
                    raise ProtocolError("text_expected", "Twilio Media Streams messages are JSON text")
                for event in stream.receive(message["text"]):
                    if isinstance(event, Started):
                        if ws.scope.get("state", {}).get("token_pending") and not token_ok(server.settings.token, event.token):
                            raise ProtocolError("unauthorized", "missing or wrong token <Parameter> in the Twilio start")
                        start = start_message_for(event)
                        spec = SessionSpec(server.new_session_id(session_id_for(event)), start.sample_rate, start.encoding,
                                           start.channels, start.context, dict(start.metadata), "twilio")
                        conn.start(spec, "int16")
                    elif isinstance(event, Audio):
                        if not conn.feed(event.samples, conn.session.spec.sample_rate):
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
                if code is None and stream.started is None:
                    code = CLOSE_POLICY  # nothing to analyze without a valid start
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
    box = Outbox(ws)
    box.put({"type": "sessions", "sessions": server.live_sessions()})
    server.monitor.outboxes.add(box)
    try:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass  # monitors only listen
    finally:
        server.monitor.outboxes.discard(box)
        await box.drain()
