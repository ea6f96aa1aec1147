"""`Client`: one `/ws/stream` session — start, binary audio, stop — and every message it gets back.

A reader task takes each server message off the socket as it arrives and keeps it until the
caller reads it (`messages()`), so nothing received is dropped, however slowly the caller reads
or however the connection ends. `error` messages and abnormal closes become exceptions
(errors.py) at their place in the message order.
"""

from __future__ import annotations

import asyncio
import collections
import json
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from stream.protocol.closing import CloseCode
from stream.protocol.native import (
    ProtocolError,
    StartMessage,
    StopMessage,
    close_code,
    loads_object,
    parse_start,
)

from .errors import (
    ClientError,
    ConnectError,
    HandshakeRefused,
    ServerError,
    StreamClosed,
)
from .samples import encode_samples

STREAM_PATH = "/ws/stream"


def stream_url(url: str) -> str:
    """ws://host:port -> ws://host:port/ws/stream (a URL with a path is kept as given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ClientError(f"the server URL must be ws:// or wss://, got {url!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=STREAM_PATH)
    return urlunsplit(parts)


@dataclass(frozen=True)
class _Closed:
    """The end of the message stream: the connection's close code and reason."""

    code: int | None
    reason: str


class Client:
    """One native session: `async with Client(url, ...) as c: await c.send(x); await c.stop(); async for m in c.messages()`.

    Entering sends `start` and waits for `ready` (`session_id`, `parties`, `parameters` are then
    set); a refused handshake raises HandshakeRefused, a refused start ServerError. Leaving
    closes the connection; call `stop()` (or `finish()`) first for the final events and summary.
    With `resume=True`, audio sent after the connection dropped reconnects first and continues the
    same session (`start` with `resume: true` and the `ready`'s `resume_token`; docs/protocol.md,
    "Resuming"); events the server published while it was down are in its recording, not here.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        sample_rate: int = 16000,
        encoding: str = "pcm_s16le",
        channels: int = 1,
        split_channels: bool = False,
        parties=(),
        session_id: str | None = None,
        context: str | None = None,
        metadata: dict | None = None,
        ssl=None,
        open_timeout: float = 15.0,
        resume: bool = False,
    ):
        self.url = stream_url(url)
        start = StartMessage(sample_rate, encoding, channels=channels, session_id=session_id, context=context,
                             metadata=dict(metadata or {}), split_channels=split_channels, parties=tuple(parties or ()))
        try:  # the server's own checks, here: a bad start fails before connecting, with the same words
            parse_start(start.to_dict(), max_channels=max(2, channels))
        except ProtocolError as exc:
            raise ClientError(f"bad start ({exc.code}): {exc.message}") from None
        self.start = start
        self.token = token
        self.ssl = ssl
        self.open_timeout = open_timeout
        self.resume = resume
        self.resume_token: str | None = None  # the `ready`'s: what continues this session after a drop
        self.resumed: dict | None = None  # the last resumption's `ready.resumed` (gap_seconds, received_seconds)
        self.session_id: str | None = None
        self.parties: tuple[str, ...] = ()
        self.parameters: dict = {}
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._inbox: collections.deque = collections.deque()  # messages and, last, a _Closed
        self._arrived = asyncio.Event()
        self._closing_error: ServerError | None = None  # the error a close is expected to follow
        self._stopped = False

    # ---- connection ----------------------------------------------------------------------
    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self, start: StartMessage | None = None) -> None:
        """Connect, send `start` (this client's, unless another is given), and wait for `ready`."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        extra = {"ssl": self.ssl} if self.ssl is not None else {}
        try:
            self._ws = await asyncio.wait_for(
                connect(self.url, additional_headers=headers, max_size=None, open_timeout=self.open_timeout, **extra),
                self.open_timeout + 5,
            )
        except InvalidStatus as exc:
            raise HandshakeRefused(self.url, exc.response.status_code) from None
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            raise ConnectError(f"cannot connect to {self.url}: {exc or type(exc).__name__}") from None
        mark = len(self._inbox)  # a reconnection's inbox may still hold the old connection's unread messages
        self._reader = asyncio.create_task(self._read())
        try:
            await self._ws.send(json.dumps((start or self.start).to_dict()))
            first = await asyncio.wait_for(self._peek(mark), self.open_timeout)
        except ConnectionClosed:
            first = await self._peek(mark)
        except asyncio.TimeoutError:
            await self.close()
            raise ConnectError(f"{self.url} sent no ready within {self.open_timeout:g} s of start") from None
        if mark and isinstance(first, dict) and first.get("type") == "ready":
            del self._inbox[mark]  # a resumed session's `ready` (its `resumed` says what the gap was)
            self.resumed = first.get("resumed")
            return
        if mark and isinstance(first, dict) and first.get("type") == "error":  # the resume was refused
            await self.close()
            raise ServerError(str(first.get("code")), str(first.get("message", "")))
        if isinstance(first, dict) and first.get("type") == "ready":
            self.session_id = first.get("session_id")
            self.parties = tuple(first.get("parties") or ())
            self.parameters = first.get("parameters") or {}
            self.resume_token = first.get("resume_token") or self.resume_token
            return
        try:  # the start was refused (an error) or the connection closed: raise it
            async for _ in self.messages():
                break
            raise ConnectError(f"{self.url} answered start with {first!r}, not ready")
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the connection (without `stop`, the server ends the session as disconnected)."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        """Keep every server message, in order, until the connection ends."""
        try:
            async for raw in self._ws:
                if isinstance(raw, bytes):
                    self._put({"type": "error", "code": "client", "message": "the server sent a binary message"})
                    continue
                try:
                    self._put(loads_object(raw))
                except ProtocolError as exc:
                    self._put({"type": "error", "code": "client", "message": f"the server sent {exc.message}"})
        except ConnectionClosed:
            pass
        finally:
            rcvd = self._ws.protocol.close_rcvd
            self._put(_Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else ""))

    def _put(self, item) -> None:
        self._inbox.append(item)
        self._arrived.set()

    async def _peek(self, index: int = 0):
        while len(self._inbox) <= index:
            self._arrived.clear()
            await self._arrived.wait()
        return self._inbox[index]

    # ---- sending -------------------------------------------------------------------------
    async def send(self, samples) -> None:
        """Send audio: int16 or float samples, (n,) or (n, channels) frames, in the start's encoding."""
        data = encode_samples(samples, self.start.encoding, self.start.channels)
        if self._stopped:
            raise ClientError("audio after stop: the session has ended")
        await self._send(data)

    async def stop(self) -> None:
        """End the audio: the server sends the last events and the summary, then closes (1000)."""
        if not self._stopped:
            self._stopped = True
            await self._send(json.dumps(StopMessage().to_dict()))

    async def _send(self, data) -> None:
        if self._ws is None:
            raise ClientError("the client is not open: use `async with Client(...)` or `await open()`")
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            if not self._resumable():
                raise self.closed_error() from None
            await self.reconnect()
            await self._ws.send(data)

    def _resumable(self) -> bool:
        """The connection dropped (no close frame from the server, or a lost one) and this session may go on."""
        return (self.resume and self.resume_token is not None and not self._stopped
                and self.close_code is None)

    async def reconnect(self) -> None:
        """Continue this session on a new connection after the old one dropped (`resume: true`)."""
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        while self._inbox and isinstance(self._inbox[-1], _Closed):  # the dropped connection's end: not the session's
            self._inbox.pop()
        await self.open(replace(self.start, session_id=self.session_id, resume=True, resume_token=self.resume_token))

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (1000: a normal end); None while open or without a close frame."""
        rcvd = self._ws.protocol.close_rcvd if self._ws is not None else None
        return rcvd.code if rcvd else None

    def closed_error(self) -> ClientError:
        """Why the connection ended: the server's closing `error`, else the close code."""
        for item in reversed(self._inbox):
            if isinstance(item, dict) and item.get("type") == "error" and close_code(item.get("code")) is not None:
                return ServerError(item["code"], item.get("message", ""))
        if self._closing_error is not None:
            return self._closing_error
        rcvd = self._ws.protocol.close_rcvd if self._ws is not None else None
        return StreamClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")

    # ---- receiving -----------------------------------------------------------------------
    async def messages(self):
        """Every server message in order, as dicts; ends at a normal close.

        An `error` raises ServerError where it came (those before it were yielded; a later call
        goes on after it), an abnormal close raises StreamClosed.
        """
        while True:
            item = await self._peek()
            if isinstance(item, _Closed):  # stays in the inbox: every later call ends the same way
                if item.code == CloseCode.NORMAL or (self._closing_error is not None and item.code == close_code(self._closing_error.code)):
                    return
                raise StreamClosed(item.code, item.reason)
            self._inbox.popleft()
            if item.get("type") == "error":
                error = ServerError(str(item.get("code")), str(item.get("message", "")))
                if error.closes:
                    self._closing_error = error
                raise error
            yield item

    async def finish(self, timeout: float = 120.0) -> list[dict]:
        """`stop`, then every message not read yet up to the summary and the close."""
        await self.stop()
        got: list[dict] = []

        async def collect():
            async for message in self.messages():
                got.append(message)

        try:
            await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise ClientError(f"the server sent no summary within {timeout:g} s of stop") from None
        return got
