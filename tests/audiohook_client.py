"""A Genesys AudioHook (v2) client written from the protocol's description, for the tests.

Its own message builder (`Client`: `seq` from 1, `serverseq` the last server message seen,
`position` the audio sent so far as "PT<seconds>S") and its own RFC 9421 signer
(`signature_headers`, string by string as Genesys builds them), independent of the server's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from urllib.parse import urlsplit

ORG = "d7934305-0972-4844-938e-9060eef73d05"
CONVERSATION = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
PARTICIPANT = {"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0", "ani": "+1-555-555-1234", "aniName": "John Doe",
               "dnis": "+1-800-555-6789"}
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
EXTERNAL = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
INTERNAL = {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}
SIGNED = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id",
          "audiohook-correlation-id", "x-api-key")
API_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
CLIENT_SECRET = base64.b64encode(b"TXlTdXBlclNlY3JldEtleVRlbGxOby1vbmVJdCdzIGEgc2VjcmV0").decode()


def duration(seconds: float) -> str:
    """An AudioHook duration: "PT1.5S", "PT0S"."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def signature_headers(uri: str, api_key: str, secret: bytes, org: str, session: str, correlation: str,
                      created: int | None = None, nonce: str | None = None, expires: int | None = None,
                      components: tuple[str, ...] = SIGNED, keyid: str | None = None) -> dict[str, str]:
    """Signature-Input and Signature as Genesys sends them (nonce=""): no nonce parameter)."""
    url = urlsplit(uri)
    values = {"@request-target": url.path + (f"?{url.query}" if url.query else ""), "@authority": url.netloc,
              "audiohook-organization-id": org, "audiohook-session-id": session,
              "audiohook-correlation-id": correlation, "x-api-key": api_key}
    created = int(time.time()) if created is None else created
    nonce = base64.b64encode(os.urandom(18)).decode() if nonce is None else nonce
    params = f';keyid="{keyid if keyid is not None else api_key}"'
    if nonce:
        params += f';nonce="{nonce}"'
    params += f';alg="hmac-sha256";created={created};expires={created + 30 if expires is None else expires}'
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")" + params
    base = "\n".join(f'"{c}": {values[c]}' for c in components) + f'\n"@signature-params": {inner}'
    signature = base64.b64encode(hmac.new(secret, base.encode(), hashlib.sha256).digest()).decode()
    return {"Signature-Input": f"sig1={inner}", "Signature": f"sig1=:{signature}:"}


def request_headers(uri: str, session: str, api_key: str = API_KEY, secret: str | None = CLIENT_SECRET,
                    org: str = ORG, **signing) -> dict[str, str]:
    """Every header of Genesys's upgrade request, signed when there is a `secret`."""
    correlation = str(uuid.uuid4())
    headers = {"Audiohook-Organization-Id": org, "Audiohook-Session-Id": session,
               "Audiohook-Correlation-Id": correlation, "X-API-KEY": api_key}
    if secret is not None:
        headers.update(signature_headers(uri, api_key, base64.b64decode(secret), org, session, correlation, **signing))
    return headers


def open_parameters(media=(STEREO,), conversation: str = CONVERSATION, **extra) -> dict:
    """An `open`'s parameters as Genesys sends them for a monitored call."""
    return {"organizationId": ORG, "conversationId": conversation, "participant": dict(PARTICIPANT),
            "media": list(media), "language": "en-US", **extra}


class Client:
    """The client's side of one session's numbering: every message it sends, and what it saw."""

    def __init__(self, session_id: str | None = None):
        self.id = session_id or str(uuid.uuid4())
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0  # seconds of audio sent

    def message(self, kind: str, params: dict | None = None, **override) -> str:
        """The next message as JSON text; `override` replaces envelope fields (a test's bad input)."""
        self.seq += 1
        body = {"version": "2", "id": self.id, "type": kind, "seq": self.seq, "serverseq": self.serverseq,
                "position": duration(self.position), "parameters": params if params is not None else {}}
        body.update(override)
        return json.dumps(body)

    def audio(self, frame: bytes, channels: int) -> bytes:
        self.position += len(frame) / channels / 8000
        return frame

    def received(self, message: dict) -> dict:
        """Check a server message's envelope and numbering; remember its seq."""
        assert message["version"] == "2" and message["id"] == self.id, message
        assert message["seq"] == self.serverseq + 1, (message, self.serverseq)
        assert message["clientseq"] <= self.seq, message
        assert isinstance(message["parameters"], dict), message
        self.serverseq = message["seq"]
        return message


__all__ = ["API_KEY", "CLIENT_SECRET", "CONVERSATION", "EXTERNAL", "INTERNAL", "ORG", "PARTICIPANT", "SIGNED", "STEREO",
           "Client", "duration", "open_parameters", "request_headers", "signature_headers"]
