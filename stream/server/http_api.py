"""HTTP endpoints of the live server: health, metrics, sessions, recordings, predict."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from stream.protocol.native import PARTY_RE

from .auth import access_of, required_right
from .message_schemas import build as build_message_schemas
from .alerts import ALERT_KINDS
from .catalog import DEFAULT_LIMIT, MAX_LIMIT, CatalogQueryError, alert_request, session_request
from .catalog.cursor import MAX_CURSOR
from .recording import audio_file, load_session, validate_session_id
from .retention import SessionBusy, delete_session
from .webhooks.api import SCHEMAS as WEBHOOK_SCHEMAS

log = logging.getLogger("emostream.server")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)


async def healthz(request: Request) -> JSONResponse:
    """Liveness (no token needed); what is loaded and how busy, for a caller with any right.
    ---
    summary: Liveness; model and load details for callers with a credential
    description: >-
      No credential needed. Without one the answer is `{"status": "ok"}`; with any valid credential it adds
      model_id, random_weights, precision, cuda_graphs, sessions and queue_depth (and, in a cluster, its peers).
    responses:
      200:
        description: the server is up
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Health'}
    """
    server = request.app.state.server
    if not access_of(request.scope).rights:
        return JSONResponse({"status": "ok"})
    return JSONResponse(await server.health())


async def metrics(request: Request) -> Response:
    """Prometheus exposition.
    ---
    summary: Prometheus metrics (watch right)
    responses:
      200:
        description: the Prometheus text exposition format
        content:
          text/plain:
            schema: {type: string}
    """
    server = request.app.state.server
    server.metrics.queue_depth.set(server.scheduler.depth)
    if server.mqtt is not None:
        server.metrics.mqtt(server.mqtt.stats())
    return Response(server.metrics.render(), media_type=server.metrics.content_type)


async def sessions(request: Request) -> JSONResponse:
    """A page of the session catalog, newest first, filtered (docs/http-api.md, Session catalog).
    ---
    summary: Live and recorded sessions, newest first, filtered and paged (watch right)
    parameters:
      - {name: live, in: query, description: "only live sessions (true) or only ended ones (false)", schema: {$ref: '#/components/schemas/QueryFlag'}}
      - {name: from, in: query, description: "started at or after (ISO 8601; no offset: UTC)", schema: {type: string, format: date-time}}
      - {name: to, in: query, description: "started before (ISO 8601)", schema: {type: string, format: date-time}}
      - {name: status, in: query, description: "live, complete, disconnected, interrupted, ...", schema: {type: string, maxLength: 256}}
      - {name: source, in: query, description: "native, twilio, ...", schema: {type: string, maxLength: 256}}
      - {name: context, in: query, description: "text in the session's context (any case)", schema: {type: string, maxLength: 256}}
      - {name: profile, in: query, description: "the domain profile the session ran with", schema: {type: string, maxLength: 256}}
      - {name: party, in: query, description: "a party of the session", schema: {type: string, maxLength: 256}}
      - {name: alert, in: query, description: "the session raised an alert of this kind", schema: {type: string, enum: [review, flagged, dual, withheld]}}
      - {name: unacknowledged, in: query, description: "the session has (true) or has no (false) open alert", schema: {$ref: '#/components/schemas/QueryFlag'}}
      - name: meta
        in: query
        description: "key=value of the session's metadata; repeat for several (all must hold)"
        style: form
        explode: true
        schema: {type: array, items: {type: string, pattern: '^[^=]+=.*$', maxLength: 400}}
      - $ref: '#/components/parameters/Limit'
      - $ref: '#/components/parameters/Cursor'
    responses:
      200:
        description: one page; `next_cursor` fetches the next (null on the last page)
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SessionList'}
      400:
        $ref: '#/components/responses/BadQuery'
      503:
        $ref: '#/components/responses/CatalogUnavailable'
    """
    return await _page(request, session_request, "sessions", lambda c, r: c.sessions(r.filters, r.limit, r.cursor))


async def alerts(request: Request) -> JSONResponse:
    """A page of alerts, newest first, filtered.
    ---
    summary: Alerts, newest first, filtered and paged (watch right)
    parameters:
      - {name: state, in: query, schema: {type: string, enum: [open, acknowledged]}}
      - {name: kind, in: query, schema: {type: string, enum: [review, flagged, dual, withheld]}}
      - {name: session, in: query, description: "one session's alerts", schema: {$ref: '#/components/schemas/SessionIdText'}}
      - {name: party, in: query, schema: {type: string, maxLength: 256}}
      - {name: from, in: query, description: "raised at or after (ISO 8601)", schema: {type: string, format: date-time}}
      - {name: to, in: query, description: "raised before (ISO 8601)", schema: {type: string, format: date-time}}
      - $ref: '#/components/parameters/Limit'
      - $ref: '#/components/parameters/Cursor'
    responses:
      200:
        description: one page; `next_cursor` fetches the next (null on the last page)
        content:
          application/json:
            schema: {$ref: '#/components/schemas/AlertList'}
      400:
        $ref: '#/components/responses/BadQuery'
      503:
        $ref: '#/components/responses/CatalogUnavailable'
    """
    return await _page(request, alert_request, "alerts", lambda c, r: c.alerts(r.filters, r.limit, r.cursor))


async def acknowledge(request: Request) -> JSONResponse:
    """Acknowledge an open alert, with an optional note and assignee; the first acknowledgement stands.
    ---
    summary: Acknowledge an alert (watch right; recorded with the credential's name)
    parameters:
      - name: alert_id
        in: path
        required: true
        description: "the alert's id, `<session_id>#<n>` (`#` sent as %23)"
        schema: {type: string, maxLength: 100}
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: '#/components/schemas/Acknowledgement'}
    responses:
      200:
        description: "the alert, acknowledged: by this request, or unchanged by whoever acknowledged it first"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Alert'}
      400:
        description: "`bad_request`: the body is not a JSON object of `note` and `assignee` (strings or null)"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      404:
        description: "`not_found`: no such alert"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      503:
        $ref: '#/components/responses/CatalogUnavailable'
    """
    server = request.app.state.server
    try:
        note, assignee = _acknowledgement(await request.body())
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    if server.catalog is None:
        return _catalog_down()
    try:
        alert, first = await server.catalog.acknowledge(
            request.path_params["alert_id"], access_of(request.scope).name, note, assignee)
    except KeyError:
        return _error(404, "not_found", "no such alert")
    except CATALOG_FAILURES:
        return _catalog_down()
    if first:
        server.acknowledged(alert)  # every monitor, here and on the peers, sees it at once
    return JSONResponse(alert)


MAX_NOTE_CHARS = 2000
MAX_ASSIGNEE_CHARS = 200
CATALOG_FAILURES = (SQLAlchemyError, OSError)  # the database went away or refused


def _acknowledgement(body: bytes) -> tuple[str | None, str | None]:
    """(note, assignee) from an acknowledgement's body (empty: neither); ValueError says what is wrong."""
    if not body.strip():
        return None, None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the body must be JSON: {\"note\": ..., \"assignee\": ...}") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(data) - {"note", "assignee"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(map(repr, unknown)))}: use note and assignee")
    out = []
    for name, limit in (("note", MAX_NOTE_CHARS), ("assignee", MAX_ASSIGNEE_CHARS)):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or null")
        if value is not None and len(value) > limit:
            raise ValueError(f"{name} is limited to {limit} characters")
        if value is not None and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise ValueError(f"{name} holds an unpaired surrogate")
        out.append((value.strip() or None) if value is not None else None)
    return out[0], out[1]


def _catalog_down() -> JSONResponse:
    return _error(503, "catalog_unavailable", "the session catalog cannot be reached; try again (the server log says why)")


async def _page(request: Request, parse, key: str, ask) -> JSONResponse:
    """Parse a list's query string, ask the catalog for the page, answer `{key: items, "next_cursor"}`."""
    server = request.app.state.server
    try:
        wanted = parse(request.query_params.multi_items())
        if server.catalog is None:
            return _catalog_down()
        page = await ask(server.catalog.catalog, wanted)
    except CatalogQueryError as exc:
        return _error(400, exc.code, exc.message)
    except CATALOG_FAILURES:
        log.exception("catalog query failed")
        return _catalog_down()
    return JSONResponse({key: page.items, "next_cursor": page.next_cursor})


async def session(request: Request) -> JSONResponse:
    """One session's record (session.json plus counts).
    ---
    summary: One session's record, with event count and audio size (watch right)
    parameters:
      - $ref: '#/components/parameters/SessionId'
    responses:
      200:
        description: session.json plus `events` (lines) and `audio_bytes`
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SessionRecord'}
      404:
        $ref: '#/components/responses/NotFound'
    """
    server = request.app.state.server
    try:
        return JSONResponse(load_session(server.settings.recordings, request.path_params["session_id"]))
    except KeyError:
        return _error(404, "not_found", "no such session")


def _session_file(request: Request, name: str, media_type: str, download: str | None = None,
                  missing: str = "no such session") -> Response:
    """Serve one file of a recorded session, or 404 (`missing`: its message when the session holds no such file)."""
    server = request.app.state.server
    try:
        sid = validate_session_id(request.path_params["session_id"])
    except ValueError:
        return _error(404, "not_found", "no such session")
    path = server.settings.recordings / sid / name
    if not path.is_file():
        return _error(404, "not_found", missing)
    client = request.client.host if request.client else None
    server.access_log.record("download", sid, access_of(request.scope).name, client, file=name)
    return FileResponse(path, media_type=media_type, filename=download and f"{sid}{download}")


async def session_audio(request: Request) -> Response:
    """The received audio of a session, as WAV; of a split session, the `?party=` one's.
    ---
    summary: A session's received audio as WAV (watch right; logged)
    parameters:
      - $ref: '#/components/parameters/SessionId'
      - name: party
        in: query
        required: false
        description: "the party whose WAV to send: required for a split session (`parties` in its record)"
        schema: {type: string, pattern: '^[A-Za-z0-9_-]{1,32}$'}
    responses:
      200:
        description: the audio as the server received it
        content:
          audio/wav:
            schema: {type: string, format: binary}
      400:
        description: "`party_required`: a split session keeps one WAV per party, name one with `party`"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      404:
        description: "`not_found`: no such session or party, or it was recorded without audio (--record events)"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
    """
    party = request.query_params.get("party")
    try:
        parties = load_session(request.app.state.server.settings.recordings, request.path_params["session_id"]).get("parties")
    except KeyError:
        return _error(404, "not_found", "no such session")
    parties = parties or []
    if party is None and parties:
        return _error(400, "party_required", f"this session keeps one WAV per party: add ?party= one of {', '.join(parties)}")
    if party is not None and party not in parties:  # the session exists: say what is wrong with the party
        shown = repr(party) if PARTY_RE.fullmatch(party) else "of that name"  # a malformed one is not echoed
        where = f"its parties are {', '.join(parties)}" if parties else "it is not split into parties (leave out ?party=)"
        return _error(404, "not_found", f"no such party {shown} in this session: {where}")
    missing = "this session was recorded without its audio (--record events)"
    if party is None:
        return _session_file(request, audio_file(), "audio/wav", ".wav", missing)
    return _session_file(request, audio_file(party), "audio/wav", f"-{party}.wav", missing)


async def session_events(request: Request) -> Response:
    """A session's recorded events (events.jsonl, one JSON object per line).
    ---
    summary: A session's events as JSON lines (watch right; logged)
    parameters:
      - $ref: '#/components/parameters/SessionId'
    responses:
      200:
        description: one event (a JSON object, docs/events.md) per line
        content:
          application/x-ndjson:
            schema: {type: string}
      404:
        $ref: '#/components/responses/NotFound'
    """
    return _session_file(request, "events.jsonl", "application/x-ndjson")


async def delete(request: Request) -> JSONResponse:
    """Delete a recorded session (never a live one), logged with who asked.
    ---
    summary: Delete a recorded session (admin right; logged)
    parameters:
      - $ref: '#/components/parameters/SessionId'
    responses:
      200:
        description: the session's folder is gone
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Deleted'}
      404:
        $ref: '#/components/responses/NotFound'
      409:
        description: "`session_live`: the session is live, here or on another server sharing the recordings folder"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
    """
    server = request.app.state.server
    sid = request.path_params["session_id"]
    client = request.client.host if request.client else None
    # Live here or, in a cluster, on another replica; delete_session also refuses a recording whose
    # session.json says "live" (another process sharing the recordings folder is writing it).
    live = server.live_ids()
    try:
        gone = await asyncio.to_thread(
            delete_session, server.settings.recordings, sid, server.access_log, access_of(request.scope).name,
            client, live,
        )
    except ValueError:
        return _error(404, "not_found", "no such session")
    except SessionBusy:
        return _error(409, "session_live", "the session is live: it can be deleted once it has ended")
    if not gone:
        return _error(404, "not_found", "no such session")
    return JSONResponse({"deleted": sid})


async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI description of these HTTP routes (the WebSockets: docs/protocol.md).
    ---
    summary: This description (OpenAPI 3)
    responses:
      200:
        description: the OpenAPI document as JSON
    """
    return JSONResponse(SCHEMAS.get_schema(routes=request.app.routes))


async def message_schemas(request: Request) -> JSONResponse:
    """The JSON Schema of every WebSocket message (`/schemas/messages.json`; docs/protocol.md), beside /openapi.json."""
    return JSONResponse(build_message_schemas())


def method_not_allowed(allowed: set[str]) -> JSONResponse:
    """405 with the `Allow` header RFC 9110 asks for."""
    listed = ", ".join(sorted(allowed))
    return JSONResponse({"type": "error", "code": "method_not_allowed", "message": f"this route answers {listed}"},
                        status_code=405, headers={"Allow": listed})


def allowed_methods(routes: Sequence[BaseRoute], scope) -> set[str] | None:
    """The methods the routes answer at this request's path; None: any (or let the router decide)."""
    allowed: set[str] = set()
    for route in routes:
        if isinstance(route, Route):
            match, _ = route.matches(scope)
            if match is Match.NONE:
                continue
            if route.methods is None:  # an HTTPEndpoint class dispatches (and refuses) methods itself
                return None
            allowed |= route.methods
    if allowed:
        return allowed
    if scope["path"] == "/api" or scope["path"].startswith("/api/"):
        return set()  # no such API route: 404 here, never one of the dashboard's files
    if any(isinstance(r, Mount) and isinstance(r.app, StaticFiles) and r.matches(scope)[0] is Match.FULL
           for r in routes):
        return {"GET", "HEAD"}
    return None


class MethodGuard:
    """ASGI middleware: a method a route does not have is 405 with `Allow`, before any credential is checked.

    Starlette alone lets the dashboard's mount at "/" take any request whose method its route lacks
    (GET /api/predict was a 404 from the static files, PUT /api/predict a 405 naming GET), and a
    path served by two routes (GET and DELETE /api/sessions/{id}) named only the first one's methods.
    The methods of each route are public (/openapi.json), so answering 405 before the access gate
    tells a caller without a credential nothing. An unknown path under /api is a JSON 404.
    """

    def __init__(self, app, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes  # the application's live list: routes added later are covered

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            allowed = allowed_methods(self.routes, scope)
            if allowed is not None and scope["method"] not in allowed:
                response = method_not_allowed(allowed) if allowed else _error(404, "not_found", "no such route")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _error_response(description: str) -> dict:
    error = {"schema": {"$ref": "#/components/schemas/Error"}}
    return {"description": description, "content": {"application/json": error}}


class ApiSchemas(SchemaGenerator):
    """The routes' docstrings, plus what the middlewares in front of every route answer.

    The access gate (auth.py) and the web guard (web_guard.py) answer before any endpoint: each
    operation gets their 401/403/421 and its `security` from `required_right`, the gate's own rule,
    so a new route is described as the gate treats it without repeating it in its docstring.
    """

    def get_schema(self, routes: list[BaseRoute]) -> dict:
        schema = super().get_schema(routes)
        schema["paths"] = {path: dict(item) for path, item in schema["paths"].items()}  # not the docstrings' own
        for path, item in schema["paths"].items():
            for method, operation in item.items():
                item[method] = self._complete(path, method, dict(operation))
        return schema

    @staticmethod
    def _complete(path: str, method: str, operation: dict) -> dict:
        right = required_right({"type": "http", "path": path, "method": method.upper()})
        responses = {str(code): answer for code, answer in operation.get("responses", {}).items()}
        if right is None:
            operation.setdefault("security", [{}, {"bearer": []}])  # open; a credential adds details
        else:
            operation.setdefault("security", [{"bearer": []}])
            operation.setdefault("x-right", right)
            responses.setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
        responses.setdefault("403", {"$ref": "#/components/responses/Forbidden"})
        responses.setdefault("421", {"$ref": "#/components/responses/MisdirectedHost"})
        operation["responses"] = dict(sorted(responses.items()))
        return operation


# Schemas the routes' docstrings refer to (`$ref: '#/components/...'`): a new route adds its own here.
COMPONENTS = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "a credential: --token (every right), --stream-token, --watch-token or --admin-token"},
    },
    "parameters": {
        "SessionId": {
            "name": "session_id", "in": "path", "required": True,
            "description": "1-64 characters of A-Z a-z 0-9 . _ - not starting with '.' (any other is 404)",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"},
        },
        "Limit": {"name": "limit", "in": "query", "required": False,
                  "description": f"items per page (default {DEFAULT_LIMIT}; more than {MAX_LIMIT} gives {MAX_LIMIT})",
                  "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT}},
        "Cursor": {"name": "cursor", "in": "query", "required": False,
                   "description": "the `next_cursor` of the previous page, with the same filters (opaque)",
                   "schema": {"type": "string", "maxLength": MAX_CURSOR}},
    },
    "responses": {
        "NotFound": _error_response("`not_found`: no such session"),
        "BadQuery": _error_response("`bad_filter`: a parameter is malformed or unknown (the message names it); "
                                    "`bad_cursor`: the cursor is not one this list gave"),
        "CatalogUnavailable": _error_response("`catalog_unavailable`: the session catalog's database cannot be reached"),
        "OutboxUnavailable": _error_response("`outbox_unavailable`: the webhook outbox file cannot be read"),
        "Unauthorized": {
            **_error_response("`unauthorized`: no credential, or a wrong one"),
            "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "enum": ["Bearer"]}}},
        },
        "Forbidden": _error_response(
            "`forbidden`: the credential lacks this route's right (`x-right`); `bad_origin`: a web page of "
            "another origin sent it (--allowed-origins)"),
        "MisdirectedHost": _error_response("`bad_host`: a Host name this server does not answer (--allowed-hosts)"),
    },
    "schemas": {
        "Error": {
            "type": "object", "required": ["type", "code", "message"],
            "properties": {"type": {"type": "string", "enum": ["error"]},
                           "code": {"type": "string", "description": "what went wrong, for programs"},
                           "message": {"type": "string", "description": "what went wrong, for people"}},
        },
        "Health": {
            "type": "object", "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "model_id": {"type": "string"}, "random_weights": {"type": "boolean"},
                "precision": {"type": "string"}, "cuda_graphs": {"type": "integer", "minimum": 0},
                "sessions": {"type": "integer", "minimum": 0}, "queue_depth": {"type": "integer", "minimum": 0},
            },
        },
        "Session": {
            "type": "object", "required": ["session_id", "status"],
            "description": "a session's session.json (docs/server.md, Recordings); more keys may follow",
            "properties": {
                "session_id": {"type": "string"},
                "status": {"type": "string", "description": "live, complete, or why it ended (disconnected, ...)"},
                "started_at": {"type": "string", "format": "date-time"},
                "ended_at": {"type": "string", "format": "date-time"},
                "sample_rate": {"type": "integer"},
                "sample_format": {"type": "string"},
                "duration_seconds": {"type": "number"},
                "audio_kept": {"type": "boolean"},
                "source": {"type": "string"},
                "parties": {"type": "array", "items": {"type": "string"}},
                "summary": {"type": "object"},
            },
        },
        "SessionListItem": {
            "description": "a session as the catalog lists it: session.json without `parameters`, plus counts",
            "allOf": [{"$ref": "#/components/schemas/Session"},
                      {"type": "object", "required": ["live", "replay", "alerts", "open_alerts"],
                       "properties": {"live": {"type": "boolean"},
                                      "replay": {"type": "boolean", "description": "a replay of a recording, not a call"},
                                      "alerts": {"type": "integer", "minimum": 0},
                                      "open_alerts": {"type": "integer", "minimum": 0, "description": "not acknowledged"},
                                      "metadata": {"type": "object"}, "context": {"type": "string", "nullable": True},
                                      "profile": {"type": "string", "nullable": True}}}],
        },
        "SessionList": {
            "type": "object", "required": ["sessions", "next_cursor"],
            "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/SessionListItem"}},
                           "next_cursor": {"type": "string", "nullable": True}},
        },
        "Alert": {
            "type": "object", "required": ["id", "session_id", "seq", "kind", "party", "stream_time", "text", "at",
                                           "state", "ack"],
            "description": "what a supervisor must look at (the monitor feed's Alert, docs/protocol.md)",
            "properties": {
                "id": {"type": "string", "description": "<session_id>#<n>"}, "session_id": {"type": "string"},
                "seq": {"type": "integer", "minimum": 1},
                "kind": {"type": "string", "enum": list(ALERT_KINDS)},
                "party": {"type": "string", "nullable": True}, "stream_time": {"type": "number", "nullable": True},
                "text": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                "state": {"type": "string", "enum": ["open", "acknowledged"]},
                "ack": {"type": "object", "nullable": True, "required": ["by", "at", "note", "assignee"],
                        "properties": {"by": {"type": "string", "description": "the credential's name"},
                                       "at": {"type": "string", "format": "date-time"},
                                       "note": {"type": "string", "nullable": True},
                                       "assignee": {"type": "string", "nullable": True}}},
            },
        },
        "AlertList": {
            "type": "object", "required": ["alerts", "next_cursor"],
            "properties": {"alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                           "next_cursor": {"type": "string", "nullable": True}},
        },
        "Acknowledgement": {
            "type": "object", "additionalProperties": False,
            "properties": {"note": {"type": "string", "nullable": True, "maxLength": MAX_NOTE_CHARS,
                                    "description": "what was done"},
                           "assignee": {"type": "string", "nullable": True, "maxLength": MAX_ASSIGNEE_CHARS,
                                        "description": "who takes it on"}},
        },
        "QueryFlag": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]},
        "SessionIdText": {"type": "string", "maxLength": 256},
        "SessionRecord": {
            "description": "session.json as the recorder wrote it, plus `events` and `audio_bytes`",
            "allOf": [{"$ref": "#/components/schemas/Session"},
                      {"type": "object", "required": ["events", "audio_bytes"],
                       "properties": {
                           "events": {"type": "integer", "minimum": 0, "description": "lines of events.jsonl"},
                           "audio_bytes": {"type": "integer", "minimum": 0, "description": "bytes of its WAV files"},
                           "encoding": {"type": "string"}, "channels": {"type": "integer"},
                           "context": {"type": "string", "nullable": True}, "profile": {"type": "string"},
                           "metadata": {"type": "object"}, "model_id": {"type": "string"},
                           "random_weights": {"type": "boolean"}, "planted": {"type": "string", "nullable": True},
                           "precision": {"type": "string"}, "parameters": {"type": "object"},
                           "record": {"type": "string", "enum": ["audio+events", "events"]},
                           "error": {"type": "string", "description": "why the recording stopped, where it failed"},
                           "replay": {"type": "boolean"}, "replay_of": {"type": "string"},
                           "replay_source": {"type": "string", "nullable": True},
                           "replay_started_at": {"type": "string", "nullable": True}}}],
        },
        "Deleted": {
            "type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}},
        },
        "Analysis": {
            "type": "object",
            "required": ["source", "emotion", "emoji", "confidence", "scores", "granularity", "timestamp", "model_id",
                         "random_weights", "precision", "duration", "context", "profile", "decision", "review"],
            "description": "what `emostream analyze` writes to result.json (docs/usage.md), plus `embedding` when asked",
            "properties": {
                "source": {"type": "string", "description": "the upload's file name, or audio_path"},
                "emotion": {"type": "string", "description": "the decision layer's call on the whole file"},
                "emoji": {"type": "string", "description": "the emotion's emoji, as the emotion2vec+ WebUI shows it"},
                "confidence": {"type": "number", "description": "the highest of `scores`"},
                "scores": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "the nine utterance scores (the domain profile applied)"},
                "granularity": {"type": "string", "enum": ["utterance", "frame"]},
                "timestamp": {"type": "string", "description": "when the analysis ran"},
                "model_id": {"type": "string"}, "random_weights": {"type": "boolean"},
                "precision": {"type": "string", "enum": ["float32", "bfloat16", "float16", "int8"]},
                "duration": {"type": "number", "description": "seconds of audio"},
                "context": {"type": "string", "nullable": True},
                "profile": {"type": "object", "description": "the domain profile: name, neutral, logit_bias"},
                "decision": {"type": "object", "description": "the decision object (docs/events.md)"},
                "review": {"type": "object", "nullable": True, "description": "a `review` event for the whole file"},
                "warning": {"type": "string", "description": "only with random (or planted) weights"},
                "planted": {"type": "string", "description": "only with a planted head: its kind"},
                "parameters": {"type": "object", "description": "frame granularity: the analyzer's settings"},
                "windows": {"type": "array", "items": {"type": "object"}, "description": "frame granularity: `window` events"},
                "segments": {"type": "array", "items": {"type": "object"}, "description": "frame granularity: `segment` events"},
                "events": {"type": "array", "items": {"type": "object"},
                           "description": "frame granularity: `transition`, `dual_emotion` and `review` events"},
                "embedding": {"type": "array", "description": "with extract_embedding: the utterance embedding (D numbers; "
                                                              "frame granularity: T rows of D)"},
            },
        },
        "PartyAnalysis": {
            "allOf": [{"$ref": "#/components/schemas/Analysis"},
                      {"type": "object", "required": ["channel"],
                       "properties": {"channel": {"type": "integer", "minimum": 0, "description": "the party's channel"}}}],
        },
        "SplitAnalysis": {
            "type": "object", "required": ["source", "split_channels", "granularity", "model_id", "random_weights", "parties"],
            "description": "with split_channels: no emotion of its own, each party's Analysis under its name",
            "properties": {
                "source": {"type": "string"}, "split_channels": {"type": "boolean", "enum": [True]},
                "granularity": {"type": "string", "enum": ["utterance", "frame"]},
                "model_id": {"type": "string"}, "random_weights": {"type": "boolean"},
                "warning": {"type": "string", "description": "only with random (or planted) weights"},
                "parties": {"type": "object", "description": "each party's Analysis with its `channel`, by party name",
                            "additionalProperties": {"$ref": "#/components/schemas/PartyAnalysis"}},
            },
        },
        # /api/predict's fields (predict.py): forms send text, JSON sends typed values.
        "AudioPath": {"type": "string", "minLength": 1,
                      "description": "a file below the server's --audio-root (403 without one or outside it, 404 if none)"},
        "Granularity": {"type": "string", "enum": ["utterance", "frame"], "default": "utterance"},
        "FormFlag": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"], "default": "false",
                     "description": "a boolean as a form sends it (any case)"},
        "PartyName": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$", "not": {"enum": ["all"]}},
        "FormParties": {"type": "string", "pattern": "^ *[A-Za-z0-9_-]{1,32} *(, *[A-Za-z0-9_-]{1,32} *)*$",
                        "description": "comma-separated party names, one per channel, with split_channels; "
                                       "distinct and not \"all\" (else 422)"},
        "FormPartiesNeedSplit": {
            "description": "parties name the channels of split_channels: only with it",
            # (no `not`: a field that fits FormParties has characters, so maxLength 0 means "absent")
            "anyOf": [{"properties": {"parties": {"maxLength": 0}}},
                      {"required": ["split_channels"],
                       "properties": {"split_channels": {"enum": ["true", "1", "yes", "on"]}}}],
        },
        "PredictResult": {
            "oneOf": [{"$ref": "#/components/schemas/Analysis"}, {"$ref": "#/components/schemas/SplitAnalysis"}],
        },
        **WEBHOOK_SCHEMAS,  # /api/webhooks (stream.server.webhooks.api)
    },
}

SCHEMAS = ApiSchemas({
    "openapi": "3.0.3",
    "info": {"title": "emostream live server", "version": "1",
             "description": "HTTP API of `emostream serve` (docs/http-api.md). Send `Authorization: Bearer <credential>`; "
                            "the right each route needs is `x-right` (docs/server.md, Access); with no credential "
                            "configured (the default loopback bind) every route is open. Errors are "
                            "`{\"type\": \"error\", \"code\", \"message\"}`. A method a route does not have is 405 "
                            "with `Allow`, before any credential is checked; HEAD works wherever GET does. "
                            "WebSockets: docs/protocol.md."},
    "components": COMPONENTS,
})
