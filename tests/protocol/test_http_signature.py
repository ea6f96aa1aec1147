"""RFC 9421 HMAC-SHA256 verification (stream.protocol.http_signature): the RFC's own example, then Genesys's requests."""

from __future__ import annotations

import base64

import pytest
from audiohook_client import API_KEY, CLIENT_SECRET, ORG, SIGNED, signature_headers

from stream.protocol.http_signature import MAX_HEADER_CHARS, SignatureError, SignedRequest, decode_secret, verify

# RFC 9421, appendix B.2.5: the request of B.2 signed with the shared secret of B.1.5.
RFC_SECRET = base64.b64decode("uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==")
RFC_HEADERS = {
    "host": ["example.com"], "date": ["Tue, 20 Apr 2021 02:07:55 GMT"], "content-type": ["application/json"],
    "signature-input": ['sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"'],
    "signature": ["sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"],
}
SESSION = "e160e428-53e2-487c-977d-96989bf5c99d"
CORRELATION = "f1a7e6d4-2b3c-4d5e-8f90-123456789abc"
URI = "wss://emostream.example.com:8443/ws/audiohook?tenant=7"


def rfc_request(**changes) -> SignedRequest:
    headers = {**RFC_HEADERS, **changes}
    return SignedRequest("POST", ("example.com",), "/foo?param=Value&Pet=dog", headers)


def genesys_request(now: int = 1_700_000_000, authority: str = "emostream.example.com:8443", **signing) -> SignedRequest:
    headers = {"audiohook-organization-id": [ORG], "audiohook-session-id": [SESSION],
               "audiohook-correlation-id": [CORRELATION], "x-api-key": [API_KEY]}
    signed = signature_headers(URI, API_KEY, base64.b64decode(CLIENT_SECRET), ORG, SESSION, CORRELATION,
                               created=signing.pop("created", now), nonce=signing.pop("nonce", "bm9uY2Utb2YtdGhlLXRlc3Qt"),
                               **signing)
    headers.update({k.lower(): [v] for k, v in signed.items()})
    return SignedRequest("GET", (authority,), "/ws/audiohook?tenant=7", headers)


def test_the_rfc_example_verifies():
    verified = verify(rfc_request(), RFC_SECRET, now=1618884473)
    assert verified.label == "sig-b25" and verified.components == ("date", "@authority", "content-type")
    assert verified.params == {"created": 1618884473, "keyid": "test-shared-secret"}


@pytest.mark.parametrize(("change", "says"), [
    ({"date": ["Tue, 20 Apr 2021 02:07:56 GMT"]}, "does not match"),  # a covered header changed
    ({"signature": ["sig-b25=:AAAAw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"]}, "does not match"),
    ({"signature": ["other=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"]}, "no byte-sequence Signature"),
    ({"content-type": []}, "not in the request"),
    ({"signature-input": []}, "not both"),
    ({"signature-input": [], "signature": []}, "not signed"),
    ({"signature-input": ['sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="k";alg="rsa-v1_5-sha256"']},
     "not supported"),
    ({"signature-input": ['sig-b25=("date" "@authority" "content-type";sf);created=1618884473']}, "component parameters"),
    ({"signature-input": ['sig-b25=("date" "date");created=1618884473']}, "twice"),
    ({"signature-input": ['sig-b25=("@body");created=1618884473']}, "unknown derived"),
    ({"signature-input": ['sig-b25=("date";created=1618884473']}, "malformed"),
    ({"signature-input": ['sig-b25=("date");created=1618884473;colour="blue"']}, "unknown signature parameter"),
])
def test_what_is_wrong_with_a_signature_is_said(change, says):
    with pytest.raises(SignatureError, match=says):
        verify(rfc_request(**change), RFC_SECRET, now=1618884473)


def test_a_wrong_secret_fails():
    with pytest.raises(SignatureError, match="does not match"):
        verify(rfc_request(), b"not the secret", now=1618884473)


def test_genesys_signature_verifies_with_the_base64_client_secret():
    verified = verify(genesys_request(), decode_secret(CLIENT_SECRET), 1_700_000_001, SIGNED, max_age=10)
    assert verified.params["keyid"] == API_KEY and verified.params["nonce"] == "bm9uY2Utb2YtdGhlLXRlc3Qt"
    assert verified.params["alg"] == "hmac-sha256" and verified.params["expires"] == 1_700_000_030


@pytest.mark.parametrize(("now", "signing", "says"), [
    (1_700_000_020, {}, "stale"),  # 20 s old: at most 10 (and 3 of clock skew)
    (1_699_999_990, {}, "future"),
    (1_700_000_005, {"expires": 1_700_000_001}, "expired"),
    (1_700_000_001, {"components": SIGNED[:-1]}, "does not cover x-api-key"),
])
def test_age_expiry_and_coverage_are_checked(now, signing, says):
    with pytest.raises(SignatureError, match=says):
        verify(genesys_request(**signing), decode_secret(CLIENT_SECRET), now, SIGNED, max_age=10)


def test_the_authority_must_be_the_one_signed():
    with pytest.raises(SignatureError, match="does not match"):
        verify(genesys_request(authority="emostream.example.com"), decode_secret(CLIENT_SECRET), 1_700_000_001, SIGNED)
    request = genesys_request()
    behind_proxy = SignedRequest(request.method, ("127.0.0.1:7860", "emostream.example.com:8443"), request.target,
                                 request.headers)
    assert verify(behind_proxy, decode_secret(CLIENT_SECRET), 1_700_000_001, SIGNED).label == "sig1"


def test_signature_params_are_rebuilt_from_their_parsed_form():
    # Spaces RFC 8941 allows, and a quoted keyid: the signer signed the canonical serialisation.
    lax = 'sig-b25=( "date"  "@authority" "content-type" );created=1618884473;keyid="test-shared-secret"'
    assert verify(rfc_request(**{"signature-input": [lax]}), RFC_SECRET, now=1618884473).label == "sig-b25"


@pytest.mark.parametrize("signature_input", [
    'sig1=("a" "b"', 'sig1="unterminated', "sig1=1,", "Sig1=1", 'a=("x")("y")', "a=1234567890123456",
])
def test_malformed_structured_fields_are_refused(signature_input):
    with pytest.raises(SignatureError, match="malformed Signature-Input"):
        verify(rfc_request(**{"signature-input": [signature_input]}), RFC_SECRET, now=1618884473)


def test_a_token_where_a_string_belongs_and_an_overlong_header_are_refused():
    token_alg = 'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="k";alg=hmac-sha256'
    with pytest.raises(SignatureError, match="'alg' must be a string"):
        verify(rfc_request(**{"signature-input": [token_alg]}), RFC_SECRET, now=1618884473)
    long_input = RFC_HEADERS["signature-input"][0] + ";tag=" + '"' + "x" * MAX_HEADER_CHARS + '"'
    with pytest.raises(SignatureError, match="longer than"):
        verify(rfc_request(**{"signature-input": [long_input]}), RFC_SECRET, now=1618884473)


def test_client_secrets_decode_as_genesys_writes_them():
    assert decode_secret(CLIENT_SECRET) == base64.b64decode(CLIENT_SECRET)
    assert decode_secret(CLIENT_SECRET.rstrip("=")) == base64.b64decode(CLIENT_SECRET)
    for bad in ("", "not base64!"):
        with pytest.raises(ValueError):
            decode_secret(bad)
