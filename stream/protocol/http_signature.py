"""HTTP Message Signatures (RFC 9421) with HMAC-SHA256, verifying side, sans I/O.

Genesys AudioHook signs its WebSocket upgrade request with the integration's client secret: the
`Signature-Input` header names the covered components and the signature's parameters, the
`Signature` header holds the HMAC-SHA256 of the signature base (RFC 9421, section 2.5):

    "@request-target": /ws/audiohook
    "@authority": emostream.example.com
    "x-api-key": ...
    "@signature-params": ("@request-target" "@authority" "x-api-key");keyid="...";nonce="...";alg="hmac-sha256";created=1700000000;expires=1700000300

Both headers are Structured Field Dictionaries (RFC 8941), parsed and serialised by `http_sf`
(mnot's RFC 9651 library, the successor of `http_sfv`). `verify` rebuilds the base from the request
as received, re-serialising the signature parameters from their parsed form (a lax signer is not
trusted), compares in constant time and checks `created` and `expires` against the clock it is
given. What a nonce means (replays) is the caller's business: `verify` returns the parameters.
(pyauth's `http-message-signatures` verifier was weighed: it reads the wall clock rather than a
given `now`, builds one URL per try where a proxy leaves two authorities, and words its own errors.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import http_sf

ALGORITHM = "hmac-sha256"
MAX_CLOCK_SKEW = 3.0  # seconds a signer's clock may run ahead, or a signature past `expires`, and still pass
DERIVED = ("@method", "@authority", "@request-target", "@path", "@query", "@scheme", "@target-uri")
SIGNATURE_PARAMETERS = ("alg", "created", "expires", "keyid", "nonce", "tag")
MAX_HEADER_CHARS = 8192  # a signature header longer than this is refused before it is parsed


class SignatureError(ValueError):
    """The request's signature is missing, malformed, of another kind, stale, or wrong: `str()` says which."""


def _dictionary(name: str, text: str) -> dict[str, tuple]:
    """A Signature-Input or Signature header -> label -> (value, params) as `http_sf` parses them."""
    if len(text) > MAX_HEADER_CHARS:
        raise SignatureError(f"a signature header longer than {MAX_HEADER_CHARS} characters")
    try:
        return http_sf.parse(text.encode("utf-8"), tltype="dictionary")
    except ValueError as exc:  # http_sf.StructuredFieldError says where
        raise SignatureError(f"malformed {name} header: {exc}") from None


def _signature_params(components: list, params: Mapping) -> str:
    """The `@signature-params` value: the inner list of components with its parameters (RFC 9421, 2.3)."""
    return http_sf.ser([(components, dict(params))])  # a one-member List serialises as that member


@dataclass(frozen=True)
class SignedRequest:
    """What of an HTTP request a signature can cover, as the server received it."""

    method: str  # "GET"
    authorities: tuple[str, ...]  # host[:port] values the signer may have used (the Host header; a public URL's)
    target: str  # the request target: path plus "?query" when there is a query
    headers: Mapping[str, list[str]]  # lower-case field name -> its values, in order
    scheme: str = "https"


@dataclass(frozen=True)
class Verified:
    """A signature that verified: its label, covered components and parameters."""

    label: str
    components: tuple[str, ...]
    params: dict = field(default_factory=dict)  # alg, created, expires, keyid, nonce, as given


def header_value(headers: Mapping[str, list[str]], name: str) -> str | None:
    """A field's canonical value (RFC 9421, section 2.1): each value trimmed, folds collapsed, joined by ", "."""
    values = headers.get(name)
    if not values:
        return None
    return ", ".join(re.sub(r"[ \t]*\r\n[ \t]+", " ", v).strip(" \t") for v in values)


def _derived(name: str, request: SignedRequest, authority: str) -> str:
    path, _, query = request.target.partition("?")
    if name == "@method":
        return request.method.upper()
    if name == "@authority":
        return authority
    if name == "@request-target":
        return request.target
    if name == "@path":
        return path or "/"
    if name == "@query":
        return "?" + query
    if name == "@scheme":
        return request.scheme.lower()
    return f"{request.scheme.lower()}://{authority}{request.target}"  # @target-uri


def signature_base(components: list[tuple], signature_params: str, request: SignedRequest, authority: str) -> str:
    """The signature base (RFC 9421, section 2.5) of `components` ((name, params) pairs) for `request`."""
    lines, seen = [], set()
    for name, component_params in components:
        if not isinstance(name, str) or name != name.lower():
            raise SignatureError(f"covered components must be lower-case strings, got {http_sf.ser(name)}")
        if component_params:
            raise SignatureError(f"component parameters are not supported: {http_sf.ser((name, component_params))}")
        if name in seen:
            raise SignatureError(f"the component {name!r} is covered twice")
        seen.add(name)
        if name.startswith("@"):
            if name not in DERIVED:
                raise SignatureError(f"unknown derived component {name!r}")
            value = _derived(name, request, authority)
        else:
            value = header_value(request.headers, name)
            if value is None:
                raise SignatureError(f"the covered header {name!r} is not in the request")
        lines.append(f"{http_sf.ser(name)}: {value}")
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines)


def _integer_param(params: dict, name: str) -> int | None:
    value = params.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise SignatureError(f"the signature parameter {name!r} must be a non-negative integer")
    return value


def verify(request: SignedRequest, secret: bytes, now: float, required: tuple[str, ...] = (),
           max_age: float | None = None) -> Verified:
    """Check the request's first signature against `secret` (HMAC-SHA256) at time `now` (Unix seconds).

    `required`: components the signature must cover; `max_age`: seconds since `created` after which
    a signature is stale (then `created` is required). Raises SignatureError saying what is wrong.
    """
    inputs_text = header_value(request.headers, "signature-input")
    signatures_text = header_value(request.headers, "signature")
    if inputs_text is None and signatures_text is None:
        raise SignatureError("the request is not signed (no Signature-Input and Signature headers)")
    if inputs_text is None or signatures_text is None:
        raise SignatureError("the request has one of Signature-Input and Signature but not both")
    inputs, signatures = _dictionary("Signature-Input", inputs_text), _dictionary("Signature", signatures_text)
    if not inputs:
        raise SignatureError("Signature-Input names no signature")
    label, (components, params) = next(iter(inputs.items()))
    signature = signatures.get(label, (None, {}))[0]
    if not isinstance(signature, bytes):
        raise SignatureError(f"no byte-sequence Signature for the label {label!r}")
    if not isinstance(components, list):
        raise SignatureError(f"the Signature-Input of {label!r} is not an inner list of components")
    for key, value in params.items():
        if key not in SIGNATURE_PARAMETERS:
            raise SignatureError(f"unknown signature parameter {key!r}")
        if key in ("alg", "keyid", "nonce", "tag") and not isinstance(value, str):  # an http_sf.Token is no str
            raise SignatureError(f"the signature parameter {key!r} must be a string")
    alg = params.get("alg", ALGORITHM)
    if alg != ALGORITHM:
        raise SignatureError(f"the signature algorithm {alg!r} is not supported: only {ALGORITHM}")
    created, expires = _integer_param(params, "created"), _integer_param(params, "expires")
    if created is not None and created > now + MAX_CLOCK_SKEW:
        raise SignatureError("the signature was created in the future (check the signer's clock)")
    if expires is not None and expires + MAX_CLOCK_SKEW < now:
        raise SignatureError("the signature has expired")
    if max_age is not None:
        if created is None:
            raise SignatureError("the signature has no `created` parameter: its age is unknown")
        if created + max_age + MAX_CLOCK_SKEW < now:
            raise SignatureError(f"the signature is stale: created {now - created:.0f} s ago, at most {max_age:g} s")
    names = tuple(name for name, _ in components)
    missing = [name for name in required if name not in names]
    if missing:
        raise SignatureError(f"the signature does not cover {', '.join(missing)}")
    signature_params = _signature_params(components, params)
    for authority in request.authorities or ("",):
        base = signature_base(components, signature_params, request, authority)
        expected = hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()
        if hmac.compare_digest(expected, signature):
            return Verified(label, names, dict(params))
    raise SignatureError("the signature does not match (wrong client secret, or the request was changed)")


def decode_secret(text: str) -> bytes:
    """A client secret as its issuer writes it (base64, padded or not, standard or URL-safe) -> the HMAC key."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the client secret is not base64") from None
    if not key:
        raise ValueError("the client secret is empty")
    return key


def sign(request: SignedRequest, secret: bytes, components: tuple[str, ...], params: tuple[tuple[str, object], ...],
         label: str = "sig1") -> dict[str, str]:
    """Signature-Input and Signature headers for `request` (its first authority): the signing side, for clients."""
    items = [(name, {}) for name in components]
    signature_params = _signature_params(items, dict(params))
    base = signature_base(items, signature_params, request, request.authorities[0])
    digest = hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()
    return {"signature-input": f"{label}={signature_params}", "signature": f"{label}={http_sf.ser(digest)}"}


__all__ = [
    "ALGORITHM",
    "MAX_CLOCK_SKEW",
    "SignatureError",
    "SignedRequest",
    "Verified",
    "decode_secret",
    "header_value",
    "sign",
    "signature_base",
    "verify",
]
