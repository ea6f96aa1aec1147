"""What the one socket loop (`live_ws.serve_wire`) needs of a connection, whatever carries it.

A WebSocket (`/ws/stream`, `/ws/twilio`, the JSON-then-PCM connectors) and a TCP socket speaking
Asterisk's AudioSocket framing (`audiosocket_server`) are both a `Transport`: accept, receive one
message, send a text message (or not), close with a code and a reason. Messages keep the ASGI
shape the loop has always read: {"type": "websocket.receive", "text" | "bytes": ...} or
{"type": "websocket.disconnect"}; after a disconnect every further `receive` reports it again, so
a loop that reads once more (while a session flushes) sees the peer gone rather than an error.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.websockets import WebSocket

DISCONNECT = {"type": "websocket.disconnect", "code": 1000}


class Transport(Protocol):
    """One connection's bytes; the wire protocol decides what they mean."""

    @property
    def server(self) -> Any:
        """The EmostreamServer the connection belongs to."""

    @property
    def token_pending(self) -> bool:
        """The handshake carried no credential: the protocol's start must carry one (Twilio's <Parameter>)."""

    async def accept(self) -> None:
        """Complete the handshake (a WebSocket's accept; nothing for TCP)."""

    async def receive(self) -> dict:
        """The next message, in the ASGI shape (module docstring)."""

    async def send_text(self, text: str) -> None:
        """Send one text message (JSON) to the peer."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the connection; `code` and `reason` as a WebSocket close frame carries them."""


class WebSocketTransport:
    """A Starlette WebSocket as a Transport; `subprotocol` is selected at accept when the client offers it."""

    def __init__(self, ws: WebSocket, subprotocol: str | None = None):
        self.ws = ws
        self.subprotocol = subprotocol
        self._gone = False

    @property
    def server(self):
        return self.ws.app.state.server

    @property
    def token_pending(self) -> bool:
        return bool(self.ws.scope.get("state", {}).get("token_pending"))

    async def accept(self) -> None:
        offered = self.ws.scope.get("subprotocols") or []
        await self.ws.accept(subprotocol=self.subprotocol if self.subprotocol in offered else None)

    async def receive(self) -> dict:
        if self._gone:
            return DISCONNECT
        message = await self.ws.receive()
        self._gone = message["type"] == "websocket.disconnect"
        return message

    async def send_text(self, text: str) -> None:
        await self.ws.send_text(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code=code, reason=reason)


def as_transport(connection) -> Transport:
    """A Starlette WebSocket wrapped as a Transport; a Transport as it is."""
    return WebSocketTransport(connection) if isinstance(connection, WebSocket) else connection


__all__ = ["DISCONNECT", "Transport", "WebSocketTransport", "as_transport"]
