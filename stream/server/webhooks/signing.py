"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` and the headers that carry them.

The id stays the same on every attempt of a delivery (receivers de-duplicate by it); the
timestamp is the attempt's, so a retry an hour later still passes a receiver's replay window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

SIGNATURE_VERSION = "v1"  # symmetric (HMAC-SHA256); `v1a` would be ed25519


def new_message_id() -> str:
    """A fresh webhook id: `msg_` and 32 hex digits (never a `.`, which the signed content uses as delimiter)."""
    return f"msg_{uuid.uuid4().hex}"


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one attempt: `v1,` and the base64 HMAC-SHA256 of id.timestamp.body."""
    if "." in message_id:
        raise ValueError("a webhook id may not contain '.'")
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt: the three Standard Webhooks headers and the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(key, message_id, int(timestamp), body),
    }


__all__ = ["SIGNATURE_VERSION", "new_message_id", "sign", "signed_headers"]
