"""What can go wrong on the client side of `/ws/stream`, as exceptions with the server's own words."""

from __future__ import annotations

from models.errors import EmostreamError
from stream.protocol.closing import LOST, CloseCode
from stream.protocol.native import close_code

# Why a refused handshake was refused, by HTTP status (the server answers these before accepting).
REFUSALS = {
    401: "a missing or wrong token",
    403: "a credential without the stream right, or a web page of another origin",
    421: "this Host name is not one the server answers (its --allowed-hosts)",
}
CLOSE_MEANINGS = {LOST: "the connection was lost without a close frame", **{int(c): c.meaning for c in CloseCode}}


class ClientError(EmostreamError):
    """A `/ws/stream` client failure."""

    code = "client"


class ConnectError(ClientError):
    """The server could not be reached, or the handshake failed."""

    code = "connect"


class HandshakeRefused(ConnectError):
    """The server answered the WebSocket handshake with an HTTP error status (401, 403, 421...)."""

    code = "refused"

    def __init__(self, url: str, status: int):
        why = REFUSALS.get(status, "")
        super().__init__(f"the server refused the connection to {url}: HTTP {status}" + (f" ({why})" if why else ""))
        self.status = status


class ServerError(ClientError):
    """An `error` message from the server; `code` is one of the protocol's ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(f"server error {code}: {message}")
        self.code = code
        self.message = message

    @property
    def closes(self) -> bool:
        """Whether the server closes the connection after this error (else the session goes on)."""
        return close_code(self.code) is not None

    def to_dict(self) -> dict:
        """The error message as the server sent it."""
        return {"type": "error", "code": self.code, "message": self.message}


class StreamClosed(ClientError):
    """The connection ended other than normally (close code other than 1000)."""

    code = "closed"

    def __init__(self, close: int | None, reason: str = ""):
        meaning = CLOSE_MEANINGS.get(close or LOST, "")
        detail = ", ".join(part for part in (reason, meaning) if part)
        super().__init__(f"the server closed the connection: {close or 1006}" + (f" ({detail})" if detail else ""))
        self.close = close or 1006
        self.reason = reason
