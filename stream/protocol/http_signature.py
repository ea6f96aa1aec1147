"""HTTP Message Signatures (RFC 9421) with HMAC-SHA256, verifying side, sans I/O.

Genesys AudioHook signs its WebSocket upgrade request with the integration's client secret: the
`Signature-Input` header names the covered components and the signature's parameters, the
`Signature` header holds the HMAC-SHA256 of the signature base (RFC 9421, section 2.5):

    "@request-target": /ws/audiohook
    "@authority": emostream.example.com
    "x-api-key": ...
    "@signature-params": ("@request-target" "@authority" "x-api-key");keyid="...";nonce="...";alg="hmac-sha256";created=1700000000;expires=1700000300

Both headers are Structured Field Dictionaries (RFC 8941); `parse_dictionary` reads the part of
that grammar they use. `verify` rebuilds the base from the request as received, re-serialising
the signature parameters from their parsed form (a lax signer is not trusted), compares in
constant time and checks `created` and `expires` against the clock it is given. What a nonce
means (replays) is the caller's business: `verify` returns the parameters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ALGORITHM = "hmac-sha256"
MAX_CLOCK_SKEW = 3.0  # seconds a signer's clock may run ahead, or a signature past `expires`, and still pass
DERIVED = ("@method", "@authority", "@request-target", "@path", "@query", "@scheme", "@target-uri")
SIGNATURE_PARAMETERS = ("alg", "created", "expires", "keyid", "nonce", "tag")
MAX_HEADER_CHARS = 8192  # a signature header longer than this is refused before it is parsed

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_INTEGER = re.compile(r"-?[0-9]{1,15}")
_DECIMAL = re.compile(r"-?[0-9]{1,12}\.[0-9]{1,3}")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


class SignatureError(ValueError):
    """The request's signature is missing, malformed, of another kind, stale, or wrong: `str()` says which."""


@dataclass(frozen=True)
class Token:
    """An sf-token (a bare word such as `hmac-sha256` without quotes)."""

    value: str


@dataclass(frozen=True)
class Item:
    """A Structured Field item with its parameters, in the order they were given."""

    value: object  # str, int, float, bool, bytes, Token, or a list of Item (an inner list)
    params: tuple[tuple[str, object], ...] = ()

    def param(self, name: str, default=None):
        """The last value given to parameter `name` (RFC 8941: later ones override)."""
        found = default
        for key, value in self.params:
            if key == name:
                found = value
        return found


class _Reader:
    """A cursor over one header value for the RFC 8941 parsing algorithms (section 4.2)."""

    def __init__(self, text: str):
        self.text = text
        self.i = 0

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.i += 1

    def fail(self, what: str):
        raise SignatureError(f"malformed structured field at character {self.i}: {what}")

    def match(self, pattern: re.Pattern) -> str | None:
        m = pattern.match(self.text, self.i)
        if m is None:
            return None
        self.i = m.end()
        return m.group(0)


def _bare_item(r: _Reader):
    c = r.peek()
    if c == '"':
        r.i += 1
        out = []
        while True:
            c = r.peek()
            if not c:
                r.fail("unterminated string")
            r.i += 1
            if c == "\\":
                nxt = r.peek()
                if nxt not in ('"', "\\") or not nxt:
                    r.fail("bad escape in a string")
                out.append(nxt)
                r.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                r.fail("a string holds a character outside printable ASCII")
            else:
                out.append(c)
    if c == ":":
        m = r.match(_BYTES)
        if m is None:
            r.fail("bad byte sequence")
        try:
            return base64.b64decode(m[1:-1], validate=True)
        except (binascii.Error, ValueError):
            r.fail("a byte sequence is not base64")
    if c == "?":
        r.i += 1
        flag = r.peek()
        if flag not in ("0", "1"):
            r.fail("bad boolean")
        r.i += 1
        return flag == "1"
    if c == "-" or c.isdigit():
        decimal = r.match(_DECIMAL)
        if decimal is not None:
            return float(decimal)
        integer = r.match(_INTEGER)
        if integer is None or (r.peek().isdigit()):
            r.fail("bad number")
        return int(integer)
    token = r.match(_TOKEN)
    if token is None:
        r.fail(f"unexpected {c!r}")
    return Token(token)


def _params(r: _Reader) -> tuple[tuple[str, object], ...]:
    params = []
    while r.peek() == ";":
        r.i += 1
        r.skip(" ")
        key = r.match(_KEY)
        if key is None:
            r.fail("bad parameter name")
        value: object = True
        if r.peek() == "=":
            r.i += 1
            value = _bare_item(r)
        params.append((key, value))
    return tuple(params)


def _item_or_inner_list(r: _Reader) -> Item:
    if r.peek() != "(":
        value = _bare_item(r)
        return Item(value, _params(r))
    r.i += 1
    members = []
    while True:
        r.skip(" ")
        if r.peek() == ")":
            r.i += 1
            return Item(members, _params(r))
        if not r.peek():
            r.fail("unterminated inner list")
        value = _bare_item(r)
        members.append(Item(value, _params(r)))
        if r.peek() not in (" ", ")"):
            r.fail("inner list members must be separated by spaces")


def parse_dictionary(text: str) -> dict[str, Item]:
    """An RFC 8941 Dictionary (`label=value;param=...`, comma-separated) -> label -> Item, last wins."""
    if len(text) > MAX_HEADER_CHARS:
        raise SignatureError(f"a signature header longer than {MAX_HEADER_CHARS} characters")
    r = _Reader(text)
    r.skip(" \t")
    out: dict[str, Item] = {}
    while r.peek():
        key = r.match(_KEY)
        if key is None:
            r.fail("bad dictionary key")
        if r.peek() == "=":
            r.i += 1
            out[key] = _item_or_inner_list(r)
        else:
            out[key] = Item(True, _params(r))
        r.skip(" \t")
        if not r.peek():
            break
        if r.peek() != ",":
            r.fail("dictionary members must be separated by commas")
        r.i += 1
        r.skip(" \t")
        if not r.peek():
            r.fail("a trailing comma")
    return out


def serialize_bare(value) -> str:
    """One bare item as RFC 8941 writes it."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    if isinstance(value, Token):
        return value.value
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise SignatureError(f"cannot serialize {type(value).__name__}")


def serialize_params(params) -> str:
    """`;key=value` for each parameter (`;key` alone for true)."""
    return "".join(f";{key}" if value is True else f";{key}={serialize_bare(value)}" for key, value in params)


def serialize_item(item: Item) -> str:
    """An item or inner list with its parameters."""
    if isinstance(item.value, list):
        return "(" + " ".join(serialize_item(member) for member in item.value) + ")" + serialize_params(item.params)
    return serialize_bare(item.value) + serialize_params(item.params)


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


def signature_base(components: list[Item], signature_params: str, request: SignedRequest, authority: str) -> str:
    """The signature base (RFC 9421, section 2.5) of `components` for `request`, as the signer must have built it."""
    lines, seen = [], set()
    for component in components:
        name = component.value
        if not isinstance(name, str) or name != name.lower():
            raise SignatureError(f"covered components must be lower-case strings, got {serialize_item(component)}")
        if component.params:
            raise SignatureError(f"component parameters are not supported: {serialize_item(component)}")
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
        lines.append(f"{serialize_item(component)}: {value}")
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
    inputs, signatures = parse_dictionary(inputs_text), parse_dictionary(signatures_text)
    if not inputs:
        raise SignatureError("Signature-Input names no signature")
    label, described = next(iter(inputs.items()))
    signature = signatures.get(label)
    if signature is None or not isinstance(signature.value, bytes):
        raise SignatureError(f"no byte-sequence Signature for the label {label!r}")
    if not isinstance(described.value, list):
        raise SignatureError(f"the Signature-Input of {label!r} is not an inner list of components")
    params = {}
    for key, value in described.params:
        if key not in SIGNATURE_PARAMETERS:
            raise SignatureError(f"unknown signature parameter {key!r}")
        if key in ("alg", "keyid", "nonce", "tag") and not isinstance(value, str):
            raise SignatureError(f"the signature parameter {key!r} must be a string")
        params[key] = value
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
    components = list(described.value)
    names = tuple(c.value for c in components)
    missing = [name for name in required if name not in names]
    if missing:
        raise SignatureError(f"the signature does not cover {', '.join(missing)}")
    signature_params = serialize_item(Item(components, described.params))
    for authority in request.authorities or ("",):
        base = signature_base(components, signature_params, request, authority)
        expected = hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()
        if hmac.compare_digest(expected, signature.value):
            return Verified(label, names, params)
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
    items = [Item(name) for name in components]
    signature_params = serialize_item(Item(items, params))
    base = signature_base(items, signature_params, request, request.authorities[0])
    digest = hmac.new(secret, base.encode("utf-8"), hashlib.sha256).digest()
    return {"signature-input": f"{label}={signature_params}", "signature": f"{label}={serialize_bare(digest)}"}


__all__ = [
    "ALGORITHM",
    "MAX_CLOCK_SKEW",
    "Item",
    "SignatureError",
    "SignedRequest",
    "Token",
    "Verified",
    "decode_secret",
    "header_value",
    "parse_dictionary",
    "serialize_item",
    "sign",
    "signature_base",
    "verify",
]
