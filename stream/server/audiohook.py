"""`/ws/audiohook`: Genesys Cloud AudioHook (protocol version 2, monitor side) in the one socket loop.

Genesys cannot send the server's tokens, so the access gate lets this path through
(`auth.AccessGate.own_auth_paths`) and the credentials of the upgrade request are checked here:
`X-API-KEY` must be --audiohook-api-key and, when --audiohook-client-secret is set, the request's
HTTP Message Signature (RFC 9421, HMAC-SHA256 with the secret; stream.protocol.http_signature)
must cover the request target, the authority, the AudioHook headers and the key, be at most
MAX_SIGNATURE_AGE seconds old and carry a nonce no earlier request used. The outcome goes to the
sans-I/O `AudioHookStream` (stream.protocol.audiohook), which answers the `open` of a refused
request with `disconnect` (reason `unauthorized`), so no session starts. With no API key set,
every request is refused so.

`AudioHookConnection` is the loop's connection with what AudioHook adds: the protocol's own
messages (`opened`, `pong`, `closed`, `disconnect`) are sent on the socket as they come, and each
pause, resumption and stretch of discarded audio is kept in the session's recording as well as
sent to the monitors. docs/connectors/audiohook.md.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections import OrderedDict
from urllib.parse import urlsplit

from starlette.websockets import WebSocket

from stream.protocol.audiohook import AudioHookStream, Handshake
from stream.protocol.http_signature import SignatureError, SignedRequest, decode_secret, header_value, verify
from stream.protocol.wire import Notice, Reply

from .live_ws import _Connection, serve_wire
from .outbox import encode

log = logging.getLogger("emostream.server")

PATH = "/ws/audiohook"
# What Genesys signs, and so what a signature must cover to be taken.
REQUIRED_COMPONENTS = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id",
                       "audiohook-correlation-id", "x-api-key")
MAX_SIGNATURE_AGE = 10.0  # seconds from a signature's `created` to the request (Genesys signs as it connects)
MIN_NONCE_CHARS = 16  # Genesys's nonces are longer; a short one is guessable, hence replayable
MAX_NONCES = 65536  # nonces remembered at once; beyond, new requests are refused rather than a nonce forgotten


class NonceLedger:
    """The nonces of accepted signatures, each kept as long as its signature could still be accepted."""

    def __init__(self, keep_seconds: float, limit: int = MAX_NONCES):
        self.keep_seconds = keep_seconds
        self.limit = limit
        self._until: OrderedDict[str, float] = OrderedDict()  # nonce -> when it may be forgotten, oldest first

    def claim(self, nonce: str, now: float) -> bool:
        """True for a nonce not seen before (it is remembered now); False for a replay, or while the ledger is full."""
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)
        if nonce in self._until or len(self._until) >= self.limit:
            return False
        self._until[nonce] = now + self.keep_seconds
        return True

    def __len__(self) -> int:
        return len(self._until)


def signed_request(scope, public_url: str | None = None) -> SignedRequest:
    """What of the upgrade request a signature covers: the Host (and --public-url's authority), the target, the headers."""
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers") or []:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) and raw else scope.get("path", "/")
    path = path.split("?", 1)[0]
    query = (scope.get("query_string") or b"").decode("latin-1")
    authorities = [a.lower() for a in (header_value(headers, "host"),) if a]
    if public_url:
        authority = urlsplit(public_url).netloc.lower()
        if authority and authority not in authorities:
            authorities.append(authority)
    secure = scope.get("scheme") in ("wss", "https")
    return SignedRequest("GET", tuple(authorities), path + (f"?{query}" if query else ""), headers,
                         "https" if secure else "http")


def refusal(request: SignedRequest, api_key: str | None, client_secret: str | None, nonces: NonceLedger,
            now: float) -> str | None:
    """Why the request's AudioHook credentials are refused, or None when they pass."""
    if not api_key:
        return "AudioHook is not enabled on this server (no --audiohook-api-key)"
    presented = header_value(request.headers, "x-api-key")
    if presented is None:
        return "the request has no X-API-KEY header"
    if not hmac.compare_digest(presented.encode("latin-1"), api_key.encode("utf-8")):
        return "wrong X-API-KEY"
    if not client_secret:
        return None
    try:
        verified = verify(request, decode_secret(client_secret), now, REQUIRED_COMPONENTS, MAX_SIGNATURE_AGE)
    except SignatureError as exc:
        return f"HTTP signature refused: {exc}"
    if verified.params.get("keyid") != presented:
        return "HTTP signature refused: its keyid is not the X-API-KEY"
    nonce = verified.params.get("nonce")
    if not nonce:
        return "HTTP signature refused: it has no nonce"
    if len(nonce) < MIN_NONCE_CHARS:
        return f"HTTP signature refused: its nonce is shorter than {MIN_NONCE_CHARS} characters"
    if not nonces.claim(nonce, now):
        return "HTTP signature refused: its nonce was used before (a replayed request)"
    return None


class AudioHookConnection(_Connection):
    """The loop's connection, sending AudioHook's own messages and recording its gaps (module docstring)."""

    async def perform(self, action) -> None:
        if isinstance(action, Reply):
            await self.reply(action.message)
            return
        await super().perform(action)
        if isinstance(action, Notice):  # a pause or a gap in the audio: kept with the events it falls between
            self.session.note({"type": "telephony", **action.body})

    async def fail(self, exc):
        verdict = await super().fail(exc)  # counted; a reply is not sent there (the client reads no analysis)
        if verdict.reply is not None:
            await self.reply(verdict.reply)
        return verdict

    async def reply(self, message: dict) -> None:
        """Send one protocol message now, in order; a client gone is noticed at the next read."""
        with contextlib.suppress(Exception):
            await self.ws.send_text(encode(message, compact=True))


def _nonces(app) -> NonceLedger:
    """The app's ledger of AudioHook nonces, made on first use."""
    ledger = getattr(app.state, "audiohook_nonces", None)
    if ledger is None:
        ledger = app.state.audiohook_nonces = NonceLedger(MAX_SIGNATURE_AGE * 2 + 10)
    return ledger


async def audiohook_stream(ws: WebSocket) -> None:
    """`/ws/audiohook`: Genesys AudioHook — open → opened, binary PCMU, ping/pong, paused/resumed, close → closed."""
    settings = ws.app.state.server.settings
    request = signed_request(ws.scope, settings.public_url)
    refused = refusal(request, settings.audiohook_api_key, settings.audiohook_client_secret, _nonces(ws.app), time.time())
    handshake = Handshake(
        session_id=header_value(request.headers, "audiohook-session-id"),
        organization_id=header_value(request.headers, "audiohook-organization-id"),
        correlation_id=header_value(request.headers, "audiohook-correlation-id"),
        refusal=refused,
    )
    if refused:
        client = ws.scope.get("client") or ("?", 0)
        log.warning("audiohook: refused a connection from %s: %s", client[0], refused)
    wire = AudioHookStream(handshake)
    await serve_wire(ws, wire, replies=False, connection=AudioHookConnection)
    if wire.client_errors:
        log.warning("audiohook session %s: the client reported %s", wire.session_id, wire.client_errors)


__all__ = ["MAX_SIGNATURE_AGE", "PATH", "REQUIRED_COMPONENTS", "AudioHookConnection", "NonceLedger",
           "audiohook_stream", "refusal", "signed_request"]
