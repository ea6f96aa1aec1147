"""WebSocket close codes (RFC 6455): the one place the server's and the client's codes are named."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Why a connection ended; the close frame's reason carries the error code where there is one."""

    NORMAL = 1000  # the session ended: stop -> final events -> summary, or the peer left
    POLICY = 1008  # a bad or missing token, a session over its length, an unusable stream
    TOO_BIG = 1009  # a message over --max-message-bytes
    INTERNAL = 1011  # the server failed; not the client's fault
    TRY_AGAIN = 1013  # the server is full or overloaded, or a reader too slow; reconnect later

    @property
    def meaning(self) -> str:
        """What the code tells a client, in a few words."""
        return MEANINGS[self]


MEANINGS = {
    CloseCode.NORMAL: "the session ended normally",
    CloseCode.POLICY: "policy violation",
    CloseCode.TOO_BIG: "a message was too big",
    CloseCode.INTERNAL: "the server failed",
    CloseCode.TRY_AGAIN: "the server is full or overloaded; try again later",
}
LOST = 1006  # never sent: what a client sees when the connection dropped without a close frame

__all__ = ["LOST", "MEANINGS", "CloseCode"]
