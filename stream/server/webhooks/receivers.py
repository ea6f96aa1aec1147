"""Webhook receivers: `--webhook URL` paired in order with `--webhook-secret whsec_<base64>`."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from models.errors import ConfigError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64  # Standard Webhooks: at least 192 bits, at most 512
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True)
class Receiver:
    """One webhook receiver: where it is and the key its deliveries are signed with."""

    url: str  # also its key in the outbox: its deliveries survive a restart with the same URL
    key: bytes = field(repr=False)  # the secret, base64-decoded

    @property
    def shown(self) -> str:
        """The URL as the API and the log show it (a password or query string masked)."""
        return shown_url(self.url)


def parse_secret(secret: str) -> bytes:
    """The key of a `whsec_<base64>` secret; ConfigError says what is wrong (never echoing the secret)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"--webhook-secret must start with {SECRET_PREFIX} (whsec_<base64 of 24 to 64 random bytes>)")
    text = secret[len(SECRET_PREFIX):]
    if not _BASE64.fullmatch(text):
        raise ConfigError("--webhook-secret: after whsec_ comes standard base64 (A-Z a-z 0-9 + /, = padding)")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("--webhook-secret: after whsec_ comes standard base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigError(f"--webhook-secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, "
                          f"this one holds {len(key)} (make one: python -c \"import base64, os; "
                          "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\")")
    return key


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host; ConfigError otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError:
        raise ConfigError(f"--webhook {shown_url(url)!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--webhook must be an http:// or https:// URL with a host, got {shown_url(url)!r}")
    if parts.fragment:
        raise ConfigError("--webhook: a URL with a #fragment is never sent; leave it out")
    return url


def receivers(urls: tuple[str, ...], secrets: tuple[str, ...]) -> tuple[Receiver, ...]:
    """The receivers `--webhook` and `--webhook-secret` name, paired in order; ConfigError when they do not pair."""
    if len(urls) != len(secrets):
        raise ConfigError(f"{len(urls)} --webhook but {len(secrets)} --webhook-secret: give each receiver its own "
                          "secret, in the same order")
    if len(set(urls)) != len(urls):
        raise ConfigError("--webhook: each URL once (one receiver, one secret)")
    return tuple(Receiver(check_url(url), parse_secret(secret)) for url, secret in zip(urls, secrets))


def shown_url(url: str) -> str:
    """A URL without what may be a credential in it: the password of its user info, its query string."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
        return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))
    except ValueError:
        return "<not a URL>"


__all__ = ["MAX_SECRET_BYTES", "MIN_SECRET_BYTES", "Receiver", "SECRET_PREFIX", "check_url", "parse_secret",
           "receivers", "shown_url"]
