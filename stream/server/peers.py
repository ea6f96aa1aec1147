"""Peers: other servers that share this one's recordings and monitors (a cluster's ingress replicas).

A server composes one `Peers` instead of being subclassed: the single-process server has
`NoPeers`; a Ray ingress replica has `stream.cluster.replica.Replica`, which exchanges live
sessions and monitor messages through the cluster's session hub. The server asks its peers
whose sessions are live (so it never reuses, deletes or repairs them), sends them its
session-tagged messages as one more sink, and lets them start, stop and report health beside it.
"""

from __future__ import annotations

from typing import Protocol


class Peers(Protocol):
    """What a server needs from the other servers it shares recordings and monitors with."""

    repair_grace: float  # seconds: a "live" recording younger than this may be a peer's new session

    def live(self) -> list[dict]:
        """The peers' live sessions, as `LiveSession.describe()` gives them."""

    def send(self, message: dict) -> None:
        """A sink: one of this server's session-tagged messages, for the peers' monitors."""

    async def join(self, server) -> None:
        """Before the server starts: learn the peers' live sessions."""

    async def serve(self, server) -> None:
        """After the server started: keep exchanging with the peers."""

    async def leave(self, server) -> None:
        """Before the server stops: end its sessions where the peers see it, stop exchanging."""

    async def health(self, server) -> dict:
        """What `/healthz` adds about the peers, for a caller with a credential."""


class NoPeers:
    """A server alone: nobody else writes its recordings or watches its sessions."""

    repair_grace = 0.0

    def live(self) -> list[dict]:
        """Nobody else's sessions."""
        return []

    def send(self, message: dict) -> None:
        """Nobody else to tell."""

    async def join(self, server) -> None:
        """Nothing to learn."""

    async def serve(self, server) -> None:
        """Nothing to exchange."""

    async def leave(self, server) -> None:
        """Nothing to tell."""

    async def health(self, server) -> dict:
        """Nothing to add."""
        return {}


__all__ = ["NoPeers", "Peers"]
