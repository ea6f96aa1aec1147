"""Access control of the live server: the token gate in front of every route but /healthz."""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs


class TokenGate:
    """ASGI middleware: every HTTP request and WebSocket but /healthz needs the token.

    Browsers cannot set WebSocket headers, so `?token=` is accepted as well as
    `Authorization: Bearer <token>`.
    """

    # Data lives under these; the dashboard's static files and /healthz are open (the page asks
    # for the token and sends it with every request).
    protected = ("/api", "/ws", "/metrics")
    # Twilio cannot send headers or query strings: its token comes in the `start` message's
    # custom parameters, which the Twilio handler checks (see `token_ok`).
    deferred_paths = ("/ws/twilio",)

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not self.token or not path.startswith(self.protected):
            return await self.app(scope, receive, send)
        if self._presented(scope):
            return await self.app(scope, receive, send)
        if scope["path"] in self.deferred_paths:
            scope.setdefault("state", {})["token_pending"] = True
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong token"})
            return
        body = json.dumps({"type": "error", "code": "unauthorized", "message": "missing or wrong token"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _presented(self, scope) -> bool:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        candidates = [auth[7:].strip()] if auth.lower().startswith("bearer ") else []
        candidates += parse_qs(scope.get("query_string", b"").decode()).get("token", [])
        return any(token_ok(self.token, c) for c in candidates)


def token_ok(expected: str | None, presented: str | None) -> bool:
    """Constant-time token comparison; no token configured means open access."""
    if not expected:
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
