"""HTTP endpoints of the live server: health, metrics, sessions, recordings, predict."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.schemas import SchemaGenerator

from stream.protocol.native import PARTY_RE

from .auth import access_of
from .recording import audio_file, list_sessions, load_session, validate_session_id
from .retention import SessionBusy, delete_session


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)


async def healthz(request: Request) -> JSONResponse:
    """Liveness (no token needed); what is loaded and how busy, for a caller with any right.
    ---
    summary: Liveness; model and load details for callers with a credential
    responses:
      200:
        description: '{"status": "ok"}, plus model_id, random_weights, precision, cuda_graphs, sessions, queue_depth with a credential'
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
        description: text/plain exposition format
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
        description: '{"sessions": [session.json of each, with "live": true/false]}'
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
      - {name: session_id, in: path, required: true, schema: {type: string}}
    responses:
      200:
        description: session.json plus "events" (lines) and "audio_bytes"
      404:
        description: no such session
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
      - {name: session_id, in: path, required: true, schema: {type: string}}
      - {name: party, in: query, required: false, schema: {type: string}, description: a split session's party}
    responses:
      200:
        description: audio/wav
      400:
        description: a split session keeps one WAV per party; `party` is required
      404:
        description: no such session or party, or it was recorded without audio (--record events)
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
      - {name: session_id, in: path, required: true, schema: {type: string}}
    responses:
      200:
        description: application/x-ndjson, one event per line (docs/events.md)
      404:
        description: no such session
    """
    return _session_file(request, "events.jsonl", "application/x-ndjson")


async def delete(request: Request) -> JSONResponse:
    """Delete a recorded session (never a live one), logged with who asked.
    ---
    summary: Delete a recorded session (admin right; logged)
    parameters:
      - {name: session_id, in: path, required: true, schema: {type: string}}
    responses:
      200:
        description: '{"deleted": session_id}'
      404:
        description: no such session
      409:
        description: the session is live, here or on another server sharing the recordings folder
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


SCHEMAS = SchemaGenerator({
    "openapi": "3.0.0",
    "info": {"title": "emostream live server", "version": "1",
             "description": "HTTP API of `emostream serve`. Send `Authorization: Bearer <credential>`; "
                            "the right each route needs is in its summary (docs/server.md, Access). WebSockets: docs/protocol.md."},
})
