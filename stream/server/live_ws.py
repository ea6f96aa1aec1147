"""WebSocket endpoints of the live server: native streams, Twilio Media Streams, monitors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

from starlette.websockets import WebSocket

from models.errors import EmostreamError
from stream.protocol.closing import CloseCode
from stream.protocol.native import ClientStream, ProtocolError, close_code, error, event_message, ready, summary
from stream.protocol.replay import ReplayStream
from stream.protocol.twilio import TwilioStream
from stream.protocol.wire import EndSession, FeedAudio, Notice, OpenReplay, OpenSession, ReplayEvents, Verdict, WireProtocol

from .auth import access_for, credentials
from .outbox import Outbox, encode
from .replay_session import start_replay
from .session import SessionSpec
from .transport import Transport, as_transport

log = logging.getLogger("emostream.server")


class _Connection:
    """One socket's session, driven by the actions its wire protocol hands out."""

    def __init__(self, ws: Transport, wire: WireProtocol, outbox: Outbox | None):
        self.ws = ws  # a WebSocket or a TCP socket, as a Transport (stream.server.transport)
        self.server = ws.server
        self.wire = wire
        self.outbox = outbox  # None: the protocol takes no messages back (Twilio)
        self.session = None
        self.ended = False
        self._deadline = time.monotonic() + self.server.settings.start_timeout
        self._before_start = 0

    async def receive(self) -> dict:
        """The next message; until a session starts, only a few and only for --start-timeout seconds."""
        if self.session is not None:
            return await self.ws.receive()
        self._before_start += 1
        limit = self.wire.max_messages_before_start
        if self._before_start > limit:
            raise ProtocolError("too_many_messages", f"more than {limit} messages before a valid start")
        try:
            return await asyncio.wait_for(self.ws.receive(), max(0.0, self._deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ProtocolError(
                "start_timeout", f"no valid start within {self.server.settings.start_timeout:g} s"
            ) from None

    async def perform(self, action) -> None:
        """Carry out one action of the wire protocol."""
        if isinstance(action, FeedAudio):
            self.feed(action.samples, action.party)
        elif isinstance(action, OpenSession):
            try:
                self.open(action)
            except EmostreamError:
                self.wire.refused()  # the client may send a corrected start
                raise
        elif isinstance(action, EndSession):
            result = await self.answering_late_messages(self.finish())
            if action.reply:
                self.send(summary(self.session.spec.session_id, result))
        elif isinstance(action, Notice):
            self.server.sinks.send({"type": "telephony", "session_id": self.session.spec.session_id, **action.body})
        elif isinstance(action, ReplayEvents):  # /ws/replay: recorded events, published as the session's
            self.session.play(action.events)
        elif isinstance(action, OpenReplay):
            try:
                self.session = start_replay(self.server, action, self.outbox)
            except EmostreamError:
                self.wire.refused()
                raise
            for message in self.session.opening():  # ready, then the recording's info events
                self.send(message)

    async def answering_late_messages(self, work):
        """Await `work` (the session's flush) while answering what the client still sends (`already_stopped`),
        so audio sent after `stop` is never dropped unannounced. A protocol that takes no replies just flushes."""
        if self.outbox is None:
            return await work
        task = asyncio.ensure_future(work)
        reader = None
        try:
            while not task.done():
                reader = asyncio.ensure_future(self.ws.receive())
                await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not reader.done():
                    break
                done, reader = reader, None
                if done.exception() is not None:  # the peer is gone (its close was read already): just flush
                    break
                message = done.result()
                if message["type"] == "websocket.disconnect":
                    break  # the client left: nothing more to read, the flush still completes
                try:
                    self.wire.handle(message.get("text"), message.get("bytes"))
                except EmostreamError as exc:  # the protocol refuses anything after its stop
                    await self.fail(exc)
        finally:
            if reader is not None:  # a pending read is cancelled safely: the message stays unread
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        return await task

    def open(self, action: OpenSession) -> None:
        """Open the session a start asks for, unless its in-band token is wrong or the server is full."""
        if self.ws.token_pending:  # the handshake carried no credential
            presented = [action.token] if action.token else []
            rights = access_for(credentials(self.server.settings), presented).rights
            if rights and "stream" not in rights:
                raise ProtocolError("forbidden", f"the token <Parameter> in the {self.wire.source} start lacks the stream right")
            if "stream" not in rights:
                raise ProtocolError("unauthorized", f"missing or wrong token <Parameter> in the {self.wire.source} start")
        start = action.start
        spec = SessionSpec(start.session_id or "", start.sample_rate, start.encoding, start.channels, start.context,
                           dict(start.metadata), self.wire.source, action.parties)
        resumed = None
        if self.server.resumption.wanted(spec, start.resume):  # a dropped connection's session, continued
            try:
                self.session, resumed = self.server.resume_session(spec, start.resume_token, self.outbox)
            except ProtocolError:
                if start.resume:
                    raise
                resumed = None  # Twilio re-opened a call in another format: a new session, never a merge
        if resumed is None:
            limit = self.server.settings.max_sessions
            if len(self.server.sessions) >= limit:  # checked at start too: sockets may open first
                self.server.metrics.sessions_refused.labels("max_sessions").inc()
                raise ProtocolError("server_full", f"server full: {limit} sessions")
            spec = replace(spec, session_id=self.server.new_session_id(start.session_id))
            self.session = self.server.open_session(spec, self.outbox, action.sample_format)
        sid, parties = self.session.spec.session_id, self.session.spec.parties
        self.send(ready(sid, self.session.core.config.describe(), parties, self.server.resumption.token(sid), resumed))
        for party, info in self.session.info_events.items():
            self.send(event_message(sid, info, party))

    def feed(self, samples, party: str | None = None) -> None:
        """Analyze samples (of one party, where each party's audio comes apart), within the length limit."""
        self.session.feed(samples, party)
        self.server.metrics.audio_seconds.inc(len(samples) / self.session.spec.sample_rate)
        if self.session.received_seconds > self.server.settings.max_session_seconds:
            raise ProtocolError(
                "session_too_long", f"sessions are limited to {self.server.settings.max_session_seconds:g} s"
            )

    def send(self, message: dict) -> None:
        """A message for this socket's client, where its protocol takes any."""
        if self.outbox is not None:
            self.outbox.put(message)

    async def finish(self) -> dict:
        """Flush the session's analysis and unregister it."""
        result = await self.session.finish()
        self.server.end_session(self.session, result)
        self.ended = True
        return result

    async def fail(self, exc: EmostreamError) -> Verdict:
        """Count an error, answer it as the protocol says, and flush the session first where it says so."""
        code = getattr(exc, "code", "error")
        self.server.metrics.errors.labels(code).inc()
        self.server.metrics.dropped.labels(code).inc()
        running = self.session is not None and not self.ended
        verdict = self.wire.fail(exc, running)
        if verdict.reply is not None:
            self.send(verdict.reply)
        if verdict.close is not None and verdict.finish_first and running:
            self.send(summary(self.session.spec.session_id, await self.finish()))
        return verdict

    def abandon(self, reason: str) -> None:
        """Close the recording of a session that did not stop normally (or, its connection dropped, suspend it)."""
        if self.session is not None and not self.ended:
            self.ended = True
            if reason == "disconnected" and self.server.suspend(self.session):
                return  # its client may resume it within --resume-seconds (stream.server.resumption)
            self.server.close_session(self.session, reason)


async def serve_wire(ws: WebSocket | Transport, wire: WireProtocol, replies: bool = True, connection=None) -> None:
    """The one socket loop: read messages, let `wire` turn them into actions, perform them, close.

    `replies`: whether the protocol's client reads messages from the server (Twilio's does not).
    `ws`: a Starlette WebSocket or any other Transport (stream.server.transport: AudioSocket's TCP);
    `connection`: what makes the connection's `_Connection` (AudioSocket joins a call's legs).
    A protocol whose peer ends its session by closing the connection (`ends_on_close`: AudioSocket,
    the JSON-then-PCM connectors) has the session flushed and completed on that close.
    """
    ws = as_transport(ws)
    await ws.accept()
    server = ws.server
    refusal = server.refusal()
    if refusal:  # `refusal` checks the session count first, then the model's queue
        full = len(server.sessions) >= server.settings.max_sessions
        return await turn_away(ws, "server_full" if full else "overload", refusal, replies)
    if server.unstarted >= server.settings.max_unstarted:
        server.metrics.sessions_refused.labels("max_unstarted").inc()
        return await turn_away(ws, "server_full", f"too many connections without a session: {server.unstarted}", replies)
    outbox = Outbox(ws, max_bytes=server.settings.max_queue_bytes) if replies else None
    conn = (connection or _Connection)(ws, wire, outbox)
    close: tuple[CloseCode, str] | None = None
    server.unstarted += 1  # until its session starts: sockets that never start are bounded too
    waiting = True
    try:
        while close is None and not wire.done and not conn.ended:
            try:
                message = await conn.receive()
                if message["type"] == "websocket.disconnect":
                    if getattr(wire, "ends_on_close", False) and conn.session is not None and not conn.ended:
                        await _end_on_close(conn)
                    break
                for action in wire.handle(message.get("text"), message.get("bytes")):
                    await conn.perform(action)
                if waiting and conn.session is not None:
                    server.unstarted -= 1
                    waiting = False
            except EmostreamError as exc:
                if outbox is None:
                    log.warning("%s stream: %s", wire.source, exc)
                verdict = await conn.fail(exc)
                if verdict.close is not None:
                    close = verdict.close, getattr(exc, "code", "error")
    except Exception:
        log.exception("%s session failed", wire.source)
        close = CloseCode.INTERNAL, "internal"
        if outbox is not None:  # as for every closing error: the `error` first, its code as the close reason
            outbox.put(error("internal", "the server failed; the details are in its log"))
    finally:
        if waiting:
            server.unstarted -= 1
        conn.abandon("disconnected" if close is None else close[1])
        if outbox is not None:
            await outbox.drain()
        code, reason = close or (CloseCode.NORMAL, "")
        with contextlib.suppress(Exception):
            await ws.close(code=code, reason=reason)


async def _end_on_close(conn: _Connection) -> None:
    """The peer closed the connection, which is how its protocol stops: flush and complete the session."""
    try:
        await conn.perform(EndSession(reply=False))
    except EmostreamError as exc:  # the session failed while flushing: counted and logged; the peer is gone
        log.warning("%s stream: %s", conn.wire.source, exc)
        await conn.fail(exc)


async def turn_away(ws: Transport, code: str, message: str, replies: bool) -> None:
    """Refuse a socket the server cannot take now: its `error` first (where the protocol reads replies), then the close
    that code names, with the code as its reason, as for every other closing error."""
    with contextlib.suppress(Exception):
        if replies:
            await ws.send_text(encode(error(code, message)))
        await ws.close(code=close_code(code), reason=code)


async def native_stream(ws: WebSocket) -> None:
    """`/ws/stream`: start → ready → binary audio → stop → final events → summary → close."""
    await serve_wire(ws, ClientStream(max_message_bytes=ws.app.state.server.settings.max_message_bytes))


async def twilio_stream(ws: WebSocket) -> None:
    """`/ws/twilio`: Twilio Media Streams (connected, start, media, mark, dtmf, stop).

    Twilio takes no analysis messages back, so events go to monitors, MQTT and the recording.
    """
    await serve_wire(ws, TwilioStream(), replies=False)


async def replay_stream(ws: WebSocket) -> None:
    """`/ws/replay`: a recording's events played back as a session marked `replay` (stream.protocol.replay)."""
    settings = ws.app.state.server.settings
    await serve_wire(ws, ReplayStream(settings.max_message_bytes, settings.max_session_seconds))


async def monitor(ws: WebSocket) -> None:
    """`/ws/monitor` (docs/protocol.md, "Monitor feed"): a snapshot, then deltas, a digest a second, and the subscribed sessions' events."""
    await ws.accept()
    server = ws.app.state.server
    box = Outbox(ws, max_bytes=server.settings.max_queue_bytes)
    try:
        server.monitor.connect(box)
        while (message := await ws.receive())["type"] != "websocket.disconnect":
            server.monitor.receive(box, message.get("text"), message.get("bytes"))
    finally:
        server.monitor.disconnect(box)
        await box.drain()
