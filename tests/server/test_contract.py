"""Issue 21: one source for the wire contract — the documents agree with the code, and the check that says so works.

Error codes, close codes and session statuses are written into docs/protocol.md and docs/http-api.md
from stream/protocol/codes.py (`python -m stream.server.contract --write`); every field of every
message's JSON Schema must be named in its section; every HTTP route's section must answer the
statuses /openapi.json lists. Each check is shown to fail when one side gains a code, a field or a
close code the other lacks.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from starlette.testclient import TestClient

from stream.protocol import codes
from stream.protocol.closing import CloseCode
from stream.protocol.native import CLOSING_ERRORS, MAX_MESSAGES_BEFORE_START
from stream.server import contract, message_schemas
from stream.server.monitor_feed import MonitorFeed

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "contract-all-rights"
COMMON = {"401", "403", "421"}  # what the layers in front of every route answer (docs/http-api.md)


@pytest.fixture(scope="module")
def docs():
    return contract.read_docs(ROOT)


@pytest.fixture(scope="module")
def client(scorer, tmp_path_factory):
    from stream.server.app import create_app
    from stream.server.settings import ServerSettings, for_device

    tmp = tmp_path_factory.mktemp("contract")
    settings, _ = for_device(ServerSettings(recordings=tmp / "rec", token=TOKEN, measure_processes=0), "cpu")
    with TestClient(create_app(settings, scorer), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").json()


# -- the documents and the code agree --------------------------------------------------------------


def test_the_documents_say_what_the_code_says(docs):
    assert contract.check(docs) == []
    assert contract.main(["--check"]) == 0


def test_too_many_messages_names_the_real_limit(docs):  # issue 21, finding 5: "more than a few" was 32
    (row,) = [line for line in docs[contract.PROTOCOL_DOC].splitlines() if line.startswith("| `too_many_messages`")]
    assert f"more than {MAX_MESSAGES_BEFORE_START} messages" in row and MAX_MESSAGES_BEFORE_START == 32
    assert row.endswith("| 1008 |")


def test_close_codes_name_their_errors_and_the_reason(docs):  # finding 4
    section = contract._section(docs[contract.PROTOCOL_DOC], "## Close codes")
    rows = {int(line.split("|")[1]): line for line in section.splitlines() if re.match(r"\| \d{4} \|", line)}
    for code, close in CLOSING_ERRORS.items():
        assert f"`{code}`" in rows[int(close)], (code, close)
    assert "`start_timeout`" in rows[1008] and "`too_many_messages`" in rows[1008]
    assert "reason" in section and "the `code` of the `error`" in section


def test_every_session_status_is_documented(docs):  # finding 7: `disconnected`
    section = contract._section(docs[contract.PROTOCOL_DOC], "### Session statuses")
    for status in codes.STATUSES:
        assert f"| `{status}` |" in section, status
    assert "`disconnected`" in section


def test_the_monitor_feed_has_its_section(docs):  # finding 6: /ws/monitor was undocumented in protocol.md
    _, monitor = contract.split_protocol(docs[contract.PROTOCOL_DOC])
    assert monitor.startswith(contract.MONITOR_HEADING)
    for kind in ("snapshot", "session_started", "session_ended", "alert", "alert_acknowledged", "digest",
                 "subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"):
        assert re.search(rf"^#+ .*`{kind}`", monitor, re.M), kind
    assert "**every** party's `info` event" in monitor  # a split session's other parties too


# -- the check fails when one side changes ---------------------------------------------------------


def test_a_code_added_to_the_code_only_fails_the_check(docs, monkeypatch):
    monkeypatch.setattr(codes, "STREAM_ERRORS", codes.STREAM_ERRORS + (codes.SocketError("brand_new", "never"),))
    assert any("errors-stream block" in p for p in contract.check(docs))
    monkeypatch.undo()
    monkeypatch.setattr(codes, "HTTP_ERRORS", codes.HTTP_ERRORS + (codes.HttpError("brand_new", (418,), "tea"),))
    assert any("errors-http block" in p for p in contract.check(docs))


def test_a_code_added_to_the_documents_only_fails_the_check(docs):
    text = docs[contract.PROTOCOL_DOC]
    row = "| `bad_json` |"
    assert row in text
    added = {**docs, contract.PROTOCOL_DOC: text.replace(row, "| `brand_new` | never | — |\n" + row, 1)}
    assert any("errors-stream block" in p for p in contract.check(added))
    dropped = {**docs, contract.PROTOCOL_DOC: re.sub(r"\| `already_stopped` \|.*\n", "", text, count=1)}
    assert any("errors-stream block" in p for p in contract.check(dropped))


def test_a_close_code_or_a_closing_error_added_on_one_side_fails_the_check(docs, monkeypatch):
    monkeypatch.setattr(codes, "CLOSES", {**codes.CLOSES, 1012: codes.Close("service restart", "reconnect")})
    assert any("close-codes block" in p for p in contract.check(docs))
    monkeypatch.undo()
    closing = [replace(e, close=CloseCode.POLICY) if e.code == "bad_audio" else e for e in codes.STREAM_ERRORS]
    monkeypatch.setattr(codes, "STREAM_ERRORS", tuple(closing))
    problems = contract.check(docs)
    assert any("close-codes block" in p for p in problems) and any("errors-stream block" in p for p in problems)


def test_a_field_added_on_one_side_fails_the_check(docs):
    document = message_schemas.build()
    document["$defs"]["ready"]["properties"]["mood"] = {"type": "string"}
    document["$defs"]["SessionState"]["properties"]["line"] = {"type": "string"}
    problems = contract.check(docs, document)
    assert any("`ready`: field `mood`" in p for p in problems)
    assert any("`SessionState`: field `line`" in p for p in problems)
    # ... and a field the documents stop naming
    text = docs[contract.PROTOCOL_DOC].replace("`queue_depth`", "queue depth")
    assert any("`overload`: field `queue_depth`" in p for p in contract.check({**docs, contract.PROTOCOL_DOC: text}))
    events = docs[contract.EVENTS_DOC].replace("`confirmed_at`", "confirmed at")
    assert any("`transition`: field `confirmed_at`" in p
               for p in contract.check({**docs, contract.EVENTS_DOC: events}))


def test_write_fills_the_blocks_and_refuses_a_document_without_markers():
    text = "intro\n<!-- contract:statuses -->\nstale text\n<!-- /contract:statuses -->\nend\n"
    written = contract.write(text, "statuses", contract.status_table())
    assert "| `disconnected` |" in written and "stale text" not in written and written.endswith("end\n")
    with pytest.raises(ValueError, match="markers"):
        contract.write("no markers", "statuses", "x")


# -- every code the server sends is in the registry --------------------------------------------------


def _literal_calls(names: set[str]):
    """(function name, literal args) of every call to `names` across stream/ and models/."""
    for path in [*ROOT.joinpath("stream").rglob("*.py"), *ROOT.joinpath("models").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):  # not log.error(...)
                name = node.func.id
                if name in names:
                    yield path, name, [a.value if isinstance(a, ast.Constant) else None for a in node.args]


def test_every_socket_error_code_the_code_raises_is_registered():
    registered = {e.code for e in codes.STREAM_ERRORS + codes.REPLAY_ERRORS + codes.MONITOR_ERRORS}
    found = {(path.name, args[0]) for path, _, args in _literal_calls({"ProtocolError", "error"})
             if args and isinstance(args[0], str)}
    assert found, "the scan found no codes"
    assert {code for _, code in found} <= registered, sorted(c for c in found if c[1] not in registered)


def test_every_http_error_code_the_code_answers_is_registered_with_its_status():
    registered = {(e.code, s) for e in codes.HTTP_ERRORS for s in e.statuses}
    found = set()
    for path, name, args in _literal_calls({"_error", "Refused", "refuse", "_refuse"}):
        literal = [a for a in args if a is not None]
        if len(literal) >= 2 and isinstance(literal[0], int) and isinstance(literal[1], str):
            found.add((literal[1], literal[0], path.name))
    assert len(found) > 10
    assert not [f for f in found if f[:2] not in registered], sorted(f for f in found if f[:2] not in registered)


def test_the_monitor_answers_exactly_its_registered_codes():
    class Box:
        broken, max_bytes = False, None

        def __init__(self):
            self.got = []

        def put_text(self, text, counted=True):
            import json

            self.got.append(json.loads(text))

    feed = MonitorFeed(lambda: [{"session_id": f"s{i}"} for i in range(9)])
    box = Box()
    feed.connect(box)
    for text, data in ((None, b"\x00"), ("{", None), ("[]", None), ('{"type": "hello"}', None),
                       ('{"type": "subscribe"}', None), ('{"type": "subscribe", "session_id": "nope"}', None)):
        feed.receive(box, text, data)
    for i in range(9):
        feed.receive(box, f'{{"type": "subscribe", "session_id": "s{i}"}}')
    sent = {m["code"] for m in box.got if m["type"] == "error"}
    assert sent == {e.code for e in codes.MONITOR_ERRORS}


# -- the message schemas ---------------------------------------------------------------------------


def test_the_message_schemas_are_valid_and_served_beside_openapi(client):
    served = client.get("/schemas/messages.json")  # no credential: a description, not data
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    document = served.json()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document == message_schemas.build()
    assert client.head("/schemas/messages.json").status_code == 200
    endpoints = document["x-endpoints"]
    assert set(endpoints["/ws/stream"]["client"]) == {"start", "stop"}
    assert {"ready", "info", "window", "segment", "summary", "error", "overload"} <= set(endpoints["/ws/stream"]["server"])
    assert set(endpoints["/ws/monitor"]["client"]) == {"subscribe", "unsubscribe"}
    assert {"snapshot", "session_started", "session_ended", "alert", "alert_acknowledged", "digest", "subscribed",
            "unsubscribed", "error"} <= set(endpoints["/ws/monitor"]["server"])
    start = message_schemas.schema_for(document, "/ws/stream", "client", "start")
    jsonschema.validate({"type": "start", "sample_rate": 8000, "encoding": "mulaw", "channels": 2,
                         "split_channels": True, "parties": ["caller", "agent"]}, start)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "start", "sample_rate": 8000, "encoding": "mulaw", "samplerate": 1}, start)


def test_a_state_field_the_schema_does_not_know_fails_its_build(monkeypatch):
    monkeypatch.setattr(message_schemas, "STATE_FIELDS", (*message_schemas.STATE_FIELDS, "line"))
    with pytest.raises(TypeError, match="line"):
        message_schemas.build()


# -- docs/http-api.md against /openapi.json (finding 9) ----------------------------------------------


def _operations(spec):
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _resolve(schema: dict, spec: dict) -> dict:
    if "$ref" in schema:
        return _resolve(spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], spec)
    return schema


def _fields(schema: dict, spec: dict) -> set[str]:
    """Every property name of a schema, through $ref, allOf and oneOf, and the items of its arrays and maps."""
    schema = _resolve(schema, spec)
    names = set(schema.get("properties", {}))
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            names |= _fields(part, spec)
    for prop in schema.get("properties", {}).values():
        prop = _resolve(prop, spec)
        for inner in (prop.get("items"), prop.get("additionalProperties")):
            if isinstance(inner, dict) and ("$ref" in inner or "properties" in inner):
                names |= _fields(inner, spec)
    return names


def test_every_route_has_its_section_with_the_statuses_codes_and_fields_of_openapi(spec, docs):
    text = docs[contract.HTTP_DOC]
    registered = {(e.code, s) for e in codes.HTTP_ERRORS for s in e.statuses}
    problems = []
    for method, path, op in _operations(spec):
        label = f"`{method} {path}`"
        section = contract._section(text, label)
        if section is None:
            problems.append(f"{label}: no section in docs/http-api.md")
            continue
        rows = [line.split("|") for line in section.splitlines() if re.match(r"\| \d{3} \|", line)]
        documented = {row[1].strip() for row in rows}
        answered = set(op["responses"])
        problems += [f"{label}: documents {s}, /openapi.json has no such answer" for s in documented - answered]
        problems += [f"{label}: answers {s}, not documented" for s in answered - COMMON - documented]
        for row in rows:
            for code in re.findall(r"`([a-z_]+)`", row[2]):
                if (code, int(row[1])) not in registered:
                    problems.append(f"{label}: {row[1]} `{code}` is not in stream.protocol.codes.HTTP_ERRORS")
        ok = op["responses"].get("200", {}).get("content", {}).get("application/json")
        if ok:
            problems += [f"{label}: field `{f}` not documented" for f in sorted(_fields(ok["schema"], spec))
                         if f"`{f}`" not in section]
    assert not problems, "\n".join(problems)


def test_the_http_check_fails_when_a_status_is_added_on_one_side(spec, docs):
    text = docs[contract.HTTP_DOC]
    section = contract._section(text, "`DELETE /api/sessions/{session_id}`")
    assert "| 409 | `session_live` |" in section
    without = text.replace(section, section.replace("| 409 | `session_live` |", "| 4O9 | `session_live` |"))
    with pytest.raises(AssertionError, match="answers 409, not documented"):
        test_every_route_has_its_section_with_the_statuses_codes_and_fields_of_openapi(
            spec, {**docs, contract.HTTP_DOC: without})
    extra = text.replace(section, section + "\n| 418 | `teapot` | never |")
    with pytest.raises(AssertionError, match="documents 418"):
        test_every_route_has_its_section_with_the_statuses_codes_and_fields_of_openapi(
            spec, {**docs, contract.HTTP_DOC: extra})
