"""HTTP endpoints of the live server: health, metrics, sessions, recordings, predict."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from stream.protocol.native import PARTY_RE

from .auth import access_of, required_right
from .recording import audio_file, list_sessions, load_session, validate_session_id
from .retention import SessionBusy, delete_session


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
    """Live and recorded sessions, newest first.
    ---
    summary: Live and recorded sessions, newest first (watch right)
    responses:
      200:
        description: each recorded session's session.json, with `live`
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SessionList'}
    """
    server = request.app.state.server
    live = server.live_ids()
    items = list_sessions(server.settings.recordings)
    for item in items:
        item["live"] = item.get("session_id") in live
    return JSONResponse({"sessions": items})


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


def _session_file(request: Request, name: str, media_type: str, download: str | None = None) -> Response:
    """Serve one file of a recorded session, or 404."""
    server = request.app.state.server
    try:
        sid = validate_session_id(request.path_params["session_id"])
    except ValueError:
        return _error(404, "not_found", "no such session")
    path = server.settings.recordings / sid / name
    if not path.is_file():
        return _error(404, "not_found", "no such session")
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
    if party is None:
        try:
            parties = load_session(request.app.state.server.settings.recordings, request.path_params["session_id"]).get("parties")
        except KeyError:
            parties = None
        if parties:
            return _error(400, "party_required", f"this session keeps one WAV per party: add ?party= one of {', '.join(parties)}")
        return _session_file(request, audio_file(), "audio/wav", ".wav")
    if not PARTY_RE.fullmatch(party):
        return _error(404, "not_found", "no such party")
    return _session_file(request, audio_file(party), "audio/wav", f"-{party}.wav")


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
    },
    "responses": {
        "NotFound": _error_response("`not_found`: no such session"),
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
            "allOf": [{"$ref": "#/components/schemas/Session"},
                      {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}],
        },
        "SessionList": {
            "type": "object", "required": ["sessions"],
            "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/SessionListItem"}}},
        },
        "SessionRecord": {
            "allOf": [{"$ref": "#/components/schemas/Session"},
                      {"type": "object", "required": ["events", "audio_bytes"],
                       "properties": {"events": {"type": "integer", "minimum": 0},
                                      "audio_bytes": {"type": "integer", "minimum": 0}}}],
        },
        "Deleted": {
            "type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}},
        },
        "Analysis": {
            "type": "object", "required": ["source", "emotion", "confidence", "scores", "granularity", "model_id"],
            "description": "what `emostream analyze` writes to result.json (docs/usage.md)",
            "properties": {
                "source": {"type": "string"}, "emotion": {"type": "string"},
                "confidence": {"type": "number"},
                "scores": {"type": "object", "additionalProperties": {"type": "number"}},
                "granularity": {"type": "string", "enum": ["utterance", "frame"]},
                "model_id": {"type": "string"}, "random_weights": {"type": "boolean"},
                "duration": {"type": "number"}, "decision": {"type": "object"}, "profile": {"type": "object"},
                "embedding": {"type": "array", "description": "with extract_embedding"},
            },
        },
        "SplitAnalysis": {
            "type": "object", "required": ["source", "split_channels", "parties"],
            "properties": {
                "source": {"type": "string"}, "split_channels": {"type": "boolean", "enum": [True]},
                "parties": {"type": "object", "description": "each party's Analysis, with its `channel`",
                            "additionalProperties": {"$ref": "#/components/schemas/Analysis"}},
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
