"""The Asterisk AudioSocket listener: a TCP server on --audiosocket-port, driving the one socket loop.

Each accepted connection is a `TcpTransport` (stream.server.transport) read by the sans-I/O
`AudioSocketStream` (stream.protocol.audiosocket) in `live_ws.serve_wire`, the loop every
WebSocket connector runs: the same limits (--start-timeout, --max-unstarted, --max-sessions,
--max-session-seconds), sessions, recordings and sinks. AudioSocket carries no credential, so the
listener accepts only the addresses of --audiosocket-allow (loopback by default) and closes any
other connection unread. Legs of one call (UUIDs `<call>-00000000000N`, docs/connectors/asterisk.md)
are joined into one session of several parties: `CallLegs` keeps which legs each call has, and a
leg's connection (`LegConnection`) joins the session its first leg opened and completes it only
when its last leg ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial

from stream.protocol.audiosocket import DEFAULT_PARTIES, HEADER_BYTES, MAX_PAYLOAD, AudioSocketStream
from stream.protocol.native import ProtocolError
from stream.protocol.wire import OpenSession

from .audiosocket_options import allowed_networks, is_allowed, party_names
from .live_ws import _Connection, serve_wire
from .transport import DISCONNECT

log = logging.getLogger("emostream.server")


class TcpTransport:
    """An AudioSocket TCP connection as a Transport: one frame per message in, nothing out, close by closing the socket.

    The server never writes to Asterisk: no audio, and no hangup, which would end the caller's call.
    """

    token_pending = False  # AudioSocket has no credential: the listener's address check stands for one

    def __init__(self, server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str = ""):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self._gone = False

    async def accept(self) -> None:
        """Nothing to negotiate: Asterisk speaks first."""

    async def receive(self) -> dict:
        if self._gone:
            return DISCONNECT
        try:  # one frame per message, as a WebSocket hands one message: an error then skips only its frame
            header = await self.reader.readexactly(HEADER_BYTES)
            payload = await self.reader.readexactly(int.from_bytes(header[1:3], "big"))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):  # closed (a partial frame is dropped)
            self._gone = True
            return DISCONNECT
        return {"type": "websocket.receive", "bytes": header + payload}

    async def send_text(self, text: str) -> None:
        """AudioSocket carries no text: errors go to the server's log."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if code != 1000:  # what a WebSocket's close frame would have said, for the administrator
            log.warning("audiosocket connection from %s closed: %s (%s)", self.peer, reason, int(code))
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@dataclass
class Call:
    """A call that comes in legs: its session and the parties whose legs are connected now."""

    session: object
    legs: set[str] = field(default_factory=set)


class CallLegs(dict):
    """Live calls that come in legs, by session id."""


class LegConnection(_Connection):
    """A connection whose AudioSocket UUID may name one leg of a call: its party's audio goes to the call's session.

    The first leg opens the session (with every party); later legs join it; the session completes
    when the last connected leg ends. A UUID that names no leg is a session of its own, as ever.
    """

    def __init__(self, ws, wire, outbox, calls: CallLegs):
        super().__init__(ws, wire, outbox)
        self.calls = calls

    @property
    def _leg(self) -> tuple[str, str] | None:
        call = getattr(self.wire, "call", None)
        return (call.session_id, call.party) if call is not None and call.party is not None else None

    def open(self, action: OpenSession) -> None:
        leg = self._leg
        if leg is None:
            return super().open(action)
        sid, party = leg
        call = self.calls.get(sid)
        if call is None:
            super().open(action)
            self.calls[sid] = Call(self.session, {party})
            return
        if party in call.legs:
            raise ProtocolError("session_in_use", f"call {sid} already has its {party} leg connected")
        rate = call.session.spec.sample_rate
        if action.start.sample_rate != rate:
            raise ProtocolError("unsupported_rate", f"the {party} leg sends {action.start.sample_rate} Hz; "
                                f"call {sid} runs at {rate} Hz: send every leg at one rate")
        call.legs.add(party)
        self.session = call.session

    def _leave(self) -> bool:
        """Detach this leg; True when other legs still stream (the session goes on without it)."""
        leg = self._leg
        call = self.calls.get(leg[0]) if leg else None
        if call is None or call.session is not self.session:
            return False
        call.legs.discard(leg[1])
        if call.legs:
            return True
        del self.calls[leg[0]]
        return False

    async def finish(self) -> dict:
        if self._leave():
            self.ended = True
            return self.session.summary("live")
        return await super().finish()

    def abandon(self, reason: str) -> None:
        if self.session is not None and not self.ended and self._leave():
            self.ended = True
            return
        super().abandon(reason)


class AudioSocketListener:
    """The TCP server for Asterisk, started and stopped with the EmostreamServer on its event loop."""

    def __init__(self, server):
        self.server = server
        settings = server.settings
        self.networks = allowed_networks(settings.audiosocket_allow)
        self.parties = party_names(settings.audiosocket_parties) if settings.audiosocket_parties else DEFAULT_PARTIES
        self.calls = CallLegs()
        self._tcp: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int | None:
        """The port listened on (the one bound when --audiosocket-port is 0)."""
        return self._tcp.sockets[0].getsockname()[1] if self._tcp and self._tcp.sockets else None

    async def start(self) -> None:
        settings = self.server.settings
        self._tcp = await asyncio.start_server(self._connected, settings.host, settings.audiosocket_port)
        log.info("AudioSocket listener on %s:%s", settings.host, self.port)

    async def stop(self) -> None:
        """Stop listening and close every connection (their sessions end as the server shuts down)."""
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._open):
            writer.close()
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 5)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        host, port = str(peer[0]), peer[1]
        if not is_allowed(host, self.networks):
            log.warning("audiosocket: refused a connection from %s, not in --audiosocket-allow", host)
            self.server.metrics.sessions_refused.labels("audiosocket_address").inc()
            writer.close()
            return
        self._open.add(writer)
        try:
            limit = min(self.server.settings.max_message_bytes, MAX_PAYLOAD)
            wire = AudioSocketStream(self.parties, max_frame_bytes=limit, peer=f"{host}:{port}")
            await serve_wire(TcpTransport(self.server, reader, writer, f"{host}:{port}"), wire, replies=False,
                             connection=partial(LegConnection, calls=self.calls))
            if wire.asterisk_error is not None:
                log.warning("audiosocket %s (%s): Asterisk sent error 0x%02x, %s", wire.call and wire.call.uuid,
                            f"{host}:{port}", *wire.asterisk_error)
        finally:
            self._open.discard(writer)


__all__ = ["AudioSocketListener", "CallLegs", "LegConnection", "TcpTransport"]
