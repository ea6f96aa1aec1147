"""Browser-facing guards: which Host and Origin the server answers, and the dashboard's security headers.

Without them, any web page the user opens could drive the loopback server's sockets (a
WebSocket is not bound by the same-origin policy), and DNS rebinding (a hostile name that
resolves to 127.0.0.1) would reach the HTTP API. Requests without an Origin (non-browser
clients) are judged by their credential alone.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .refusal import refuse
from .settings import LOOPBACK_HOSTS, ServerSettings, is_loopback

# The dashboard loads only its own files, talks only to its own server, and is never framed.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; worker-src 'self'; media-src 'self' blob:; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _split(value: str | None) -> list[str]:
    return [item.strip().lower() for item in (value or "").split(",") if item.strip()]


def allowed_hosts(settings: ServerSettings) -> frozenset[str] | None:
    """Host names the server answers (lower case, no port); None: any."""
    names = _split(settings.allowed_hosts)
    if names:
        return None if "*" in names else frozenset(names)
    if is_loopback(settings.host):
        return frozenset({*LOOPBACK_HOSTS, settings.host.lower()})
    return None  # a public bind answers its DNS names; name them with --allowed-hosts to narrow it


def host_name(host_header: str) -> str:
    """`example.com:7860` -> `example.com`; `[::1]:7860` -> `::1`."""
    try:
        return (urlsplit(f"//{host_header}").hostname or "").lower()
    except ValueError:
        return ""


class WebGuard:
    """ASGI middleware: refuse foreign Hosts and Origins; add security headers to HTTP answers."""

    def __init__(self, app, settings: ServerSettings):
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.origins = frozenset(o.rstrip("/") for o in _split(settings.allowed_origins))

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.hosts is not None and host and host_name(host) not in self.hosts:
            return await _refuse(scope, send, 421, "bad_host", "this server does not answer to that Host name")
        origin = headers.get(b"origin")
        if origin is not None and not self.origin_ok(origin.decode("latin-1"), host):
            return await _refuse(scope, send, 403, "bad_origin", "requests from this web page's origin are not allowed")
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)

    def origin_ok(self, origin: str, host: str) -> bool:
        """The page's own origin (same host and port as the request), or one configured."""
        origin = origin.strip().lower().rstrip("/")
        if origin in self.origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.lower()


async def _refuse(scope, send, status: int, code: str, message: str) -> None:
    await refuse(scope, send, status, code, message, SECURITY_HEADERS if scope["type"] == "http" else ())
