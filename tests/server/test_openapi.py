"""Issue 18: /openapi.json is a valid OpenAPI 3 document, and every route answers as it says.

In process (Starlette's TestClient around `create_app`): the document, wrong methods (405 with
`Allow`, whatever the credential), unknown API paths, HEAD, and /api/predict's media types and
field checks that answer before any decoding. The spec-driven fuzzing of a real server is in
test_api_fuzz.py.
"""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

TOKEN = "fuzz-all-rights"
WATCH = "watch-only"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


@pytest.fixture(scope="module")
def client(scorer, tmp_path_factory):
    from stream.server.app import create_app
    from stream.server.settings import ServerSettings, for_device

    tmp = tmp_path_factory.mktemp("openapi")
    (tmp / "audio").mkdir()
    settings, _ = for_device(ServerSettings(recordings=tmp / "rec", token=TOKEN, watch_token=WATCH,
                                            audio_root=tmp / "audio", measure_processes=0), "cpu")
    with TestClient(create_app(settings, scorer), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def spec(client):
    r = client.get("/openapi.json")  # no credential: a description, not data
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def _walk(node, where="$"):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")
    else:
        yield where, node


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_document_is_valid_openapi_3(spec):
    validate(spec)  # openapi-spec-validator: raises on any violation
    assert spec["openapi"].startswith("3.0")
    # A YAML slip in a flow mapping (`{description: a, b}`) turns text into a key worth null: none anywhere,
    # but where a schema names null as a value (`enum: [null]`, a JSON field that may be null).
    slips = [where for where, value in _walk(spec) if value is None and ".enum[" not in where]
    assert not slips, slips


def test_every_operation_documents_parameters_bodies_and_answers(spec):
    refs = {f"#/components/{kind}/{name}" for kind, items in spec["components"].items() for name in items}
    for where, value in _walk(spec):  # every $ref resolves
        if where.endswith(".$ref"):
            assert value in refs, (where, value)
    for path, item in spec["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            params = [spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                      for p in op.get("parameters", [])]
            assert {p["name"] for p in params if p["in"] == "path"} == names, label
            assert all(p["required"] for p in params if p["in"] == "path"), label
            responses = op["responses"]
            assert any(code.startswith("2") for code in responses), label
            assert {"403", "421"} <= set(responses), label
            if op["security"] != [{}, {"bearer": []}]:  # a route that needs a right
                assert "401" in responses and op["x-right"] in ("stream", "watch", "admin"), label
            for code, answer in responses.items():
                if "$ref" in answer:
                    answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
                assert answer["description"] and answer.get("content"), (label, code)
                if code.startswith("4"):  # errors are JSON: {"type": "error", "code", "message"}
                    assert answer["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    predict = spec["paths"]["/api/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data", "application/json",
                                                       "application/x-www-form-urlencoded"}
    assert {"400", "401", "403", "404", "413", "415", "422", "429"} <= set(predict["responses"])
    assert "409" in spec["paths"]["/api/sessions/{session_id}"]["delete"]["responses"]
    for name in ("Error", "Session", "SessionList", "PredictResult"):
        assert name in spec["components"]["schemas"]


def test_the_form_sends_booleans_and_parties_as_text(spec):
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    schemas = spec["components"]["schemas"]
    assert form["extract_embedding"] == form["split_channels"] == {"$ref": "#/components/schemas/FormFlag"}
    assert set(schemas["FormFlag"]["enum"]) >= {"true", "false"} and schemas["FormFlag"]["type"] == "string"
    assert schemas["FormParties"]["type"] == "string"
    as_json = body["application/json"]["schema"]["properties"]
    assert as_json["split_channels"]["type"] == as_json["extract_embedding"]["type"] == "boolean"
    assert as_json["parties"]["type"] == "array"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {WATCH}"}, AUTH],
                         ids=["none", "wrong", "watch", "all-rights"])
def test_a_method_a_route_lacks_is_405_with_allow_whatever_the_credential(client, spec, headers):
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item}
        allowed = documented | ({"HEAD"} if "GET" in documented else set())
        for method in METHODS:
            if method in allowed:
                continue
            r = client.request(method, _concrete(path), headers=headers)
            assert r.status_code == 405, (method, path, r.status_code)
            assert set(r.headers["allow"].split(", ")) == allowed, (method, path)
            if method != "HEAD":
                assert r.json()["type"] == "error" and r.json()["code"] == "method_not_allowed"
            assert r.headers["x-content-type-options"] == "nosniff"  # the web guard still wraps it


def test_the_dashboard_files_and_unknown_api_paths(client):
    r = client.post("/", headers=AUTH)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    for method in ("GET", "POST", "DELETE"):  # an API path never falls through to the dashboard's files
        r = client.request(method, "/api/nope", headers=AUTH)
        assert r.status_code == 404 and r.json()["code"] == "not_found", method
    r = client.get("/api/sessions/", headers=AUTH)
    assert r.status_code == 404 and r.json()["type"] == "error"


def test_head_wherever_get(client, spec):
    for path, item in spec["paths"].items():
        if "get" in item:
            r = client.head(_concrete(path), headers=AUTH)
            assert r.status_code in (200, 404), path
    assert client.head("/healthz").status_code == 200


def test_predict_media_types_and_fields(client):
    def post(**kw):
        return client.post("/api/predict", **{"headers": AUTH, **kw})

    r = post(content=b"hello", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    r = post(content=b"--x--", headers={**AUTH, "Content-Type": "multipart/form-data"})  # no boundary
    assert r.status_code == 400
    r = post(content=b"[" * 100_000, headers={**AUTH, "Content-Type": "application/json"})  # deeper than the parser
    assert r.status_code == 400 and r.json()["code"] == "bad_json"
    for bad in ({"audio_path": "a.wav", "split_channels": "true"}, {"audio_path": "a.wav", "extract_embedding": 1},
                {"audio_path": "a.wav", "granularity": None}, {"audio_path": ""}, {"audio_path": None},
                {"audio_path": "a.wav", "parties": "a,b", "split_channels": True},
                {"audio_path": "a.wav", "parties": ["a b"], "split_channels": True}):
        r = post(json=bad)
        assert r.status_code == 400 and r.json()["type"] == "error", (bad, r.text)
    r = post(data={"audio_path": "a.wav", "split_channels": "maybe"})
    assert r.status_code == 400 and "split_channels" in r.json()["message"]
    r = post(data={"audio_path": "a.wav", "parties": "a,a", "split_channels": "on"})
    assert r.status_code == 422 and r.json()["code"] == "bad_parties"  # fits the schema, cannot be used
    r = post(data={"audio_path": "a.wav", "parties": "a,all", "split_channels": "yes"})
    assert r.status_code == 422 and r.json()["code"] == "bad_parties"
    r = post(json={"audio_path": "a.wav", "parties": ["a", "b"]})  # parties without split_channels
    assert r.status_code == 422 and r.json()["code"] == "bad_parties"
    for name in ("missing.wav", "sub/none.wav", "a\x00b", "x" * 5000):
        r = post(json={"audio_path": name, "context": None, "parties": None})
        assert r.status_code == 404 and r.json()["code"] == "not_found", name
    assert post(json={"audio_path": "../outside.wav"}).status_code == 403
    assert client.post("/api/predict", json={"audio_path": "a.wav"},
                       headers={"Authorization": f"Bearer {WATCH}"}).status_code == 403
