"""Access control of the live server: credentials, the rights they carry, and the gate that checks them.

Three rights (docs/server.md, "Access"): `stream` sends audio (/ws/stream, /ws/twilio, /api/predict)
or replays recorded calls (/ws/replay),
`watch` reads what was analyzed (/ws/monitor, /api/sessions..., /metrics), `admin` deletes
sessions and sends dead webhooks again. Each has its own credential (--stream-token, --watch-token, --admin-token; admin may
watch too); --token carries all three. With no credential configured every route is open (the
default loopback bind). /healthz and the dashboard's static files are always open.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from twilio.request_validator import RequestValidator

from .refusal import refuse
from .settings import ServerSettings

RIGHTS = ("stream", "watch", "admin")
STREAM_PATHS = ("/ws/stream", "/ws/twilio", "/ws/replay", "/api/predict",
                "/ws/vonage", "/ws/jambonz", "/ws/audiofork")  # the JSON-then-PCM connectors (stream.server.connectors)
ADMIN_POSTS = ("/api/webhooks/dead/",)  # POSTs under these need admin: sending a dead webhook again
PROTECTED = ("/api", "/ws", "/metrics")  # under these lies data; the rest (/openapi.json too) is static


@dataclass(frozen=True)
class Credential:
    """One configured secret and the rights it carries."""

    name: str  # the option it came from ("token", "stream_token"...): what logs name, never the secret
    secret: str
    rights: frozenset[str]


@dataclass(frozen=True)
class Access:
    """Who a request is, as far as the gate could tell."""

    name: str  # the credential's name, "open" when none is configured, "anonymous" when none matched
    rights: frozenset[str]


OPEN = Access("open", frozenset(RIGHTS))
ANONYMOUS = Access("anonymous", frozenset())


def credentials(settings: ServerSettings) -> tuple[Credential, ...]:
    """The credentials the settings configure."""
    kinds = (("token", RIGHTS), ("stream_token", ("stream",)), ("watch_token", ("watch",)),
             ("admin_token", ("admin", "watch")))
    return tuple(Credential(name, getattr(settings, name), frozenset(rights))
                 for name, rights in kinds if getattr(settings, name))


def access_for(creds: tuple[Credential, ...], presented: list[str]) -> Access:
    """The rights of every credential among `presented` (compared in constant time)."""
    matched = [c for c in creds for p in presented if token_ok(c.secret, p)]
    if not matched:
        return ANONYMOUS
    return Access("+".join(sorted({c.name for c in matched})), frozenset().union(*(c.rights for c in matched)))


def required_right(scope) -> str | None:
    """The right a request needs; None: open to all (/healthz, the dashboard's files)."""
    path = scope.get("path", "")
    if not path.startswith(PROTECTED):
        return None
    if path in STREAM_PATHS:
        return "stream"
    if scope["type"] == "http" and (scope.get("method") == "DELETE"
                                    or (scope.get("method") == "POST" and path.startswith(ADMIN_POSTS))):
        return "admin"
    return "watch"


def access_of(scope) -> Access:
    """The Access the gate recorded for this request (OPEN for requests that passed no gate)."""
    return scope.get("state", {}).get("access", OPEN)


class AccessGate:
    """ASGI middleware: each request must carry a credential with the right its route needs.

    `Authorization: Bearer <secret>` everywhere; `?token=` only on WebSockets, because browsers
    cannot set their headers (on plain HTTP it would leak through proxy logs and history).
    """

    # Twilio cannot send headers or query strings: a Twilio stream authenticates with the
    # X-Twilio-Signature of its request (checked here when --twilio-auth-token is set) or with
    # the `token` <Parameter> of its `start`, which the Twilio handler checks (`token_pending`).
    deferred_paths = ("/ws/twilio",)
    # Genesys AudioHook sends its own credentials (X-API-KEY and an HTTP signature), never the server's:
    # its handler checks them (stream.server.audiohook) and refuses in the protocol (`disconnect`).
    own_auth_paths = ("/ws/audiohook",)

    def __init__(self, app, settings: ServerSettings):
        self.app = app
        self.settings = settings
        self.creds = credentials(settings)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        if scope.get("path") in self.own_auth_paths:
            state["access"] = Access("audiohook", frozenset())  # the handler decides
            return await self.app(scope, receive, send)
        if not self.creds and not self.settings.twilio_auth_token:
            state["access"] = OPEN
            return await self.app(scope, receive, send)
        access = access_for(self.creds, self._presented(scope)) if self.creds else OPEN
        needed = required_right(scope)
        if scope.get("path") in self.deferred_paths:
            signed = self._twilio_signature(scope)
            if signed is False:
                return await refuse(scope, send, 401, "unauthorized", "wrong X-Twilio-Signature")
            if signed:
                access = Access("twilio_signature", access.rights | {"stream"})
            elif self.settings.twilio_auth_token and not self.creds:
                return await refuse(scope, send, 401, "unauthorized", "missing X-Twilio-Signature")
            elif "stream" not in access.rights:
                state["token_pending"] = True  # the start's token <Parameter> decides
        state["access"] = access
        if needed is None or needed in access.rights or state.get("token_pending"):
            return await self.app(scope, receive, send)
        if access.rights:
            return await refuse(scope, send, 403, "forbidden", f"this credential lacks the {needed!r} right")
        return await refuse(scope, send, 401, "unauthorized", "missing or wrong token")

    def _presented(self, scope) -> list[str]:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        candidates = [auth[7:].strip()] if auth.lower().startswith("bearer ") else []
        if scope["type"] == "websocket":
            candidates += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        return candidates

    def _twilio_signature(self, scope) -> bool | None:
        """True/False: a signature was checked; None: none to check (no auth token or no header)."""
        if not self.settings.twilio_auth_token:
            return None
        headers = dict(scope.get("headers") or [])
        signature = headers.get(b"x-twilio-signature")
        if signature is None:
            return None
        validator = RequestValidator(self.settings.twilio_auth_token)
        return any(validator.validate(url, {}, signature.decode("latin-1")) for url in _request_urls(scope, self.settings))


def _request_urls(scope, settings: ServerSettings) -> list[str]:
    """The URLs Twilio may have signed for this request: as configured, and as the request names itself."""
    query = scope.get("query_string", b"").decode("latin-1")
    tail = scope["path"] + (f"?{query}" if query else "")
    urls = [settings.public_url.rstrip("/") + tail] if settings.public_url else []
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
    secure = scope.get("scheme") in ("wss", "https")
    urls += [f"{'wss' if secure else 'ws'}://{host}{tail}", f"{'https' if secure else 'http'}://{host}{tail}"]
    return urls


def token_ok(expected: str | None, presented: str | None) -> bool:
    """Constant-time token comparison; no token configured means open access."""
    if not expected:
        return True
    # surrogatepass: a presented lone surrogate (JSON allows one) is simply not the secret
    return presented is not None and hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())
