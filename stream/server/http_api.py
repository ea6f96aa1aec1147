"""HTTP endpoints of the live server: health, metrics, sessions, recordings, predict."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from models.errors import EmostreamError
from stream.offline.analyze import GRANULARITIES, analyze_audio
from stream.offline.audio_file import load

from .recording import list_sessions, load_session, validate_session_id


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)


async def healthz(request: Request) -> JSONResponse:
    """Liveness and what is loaded (no token needed)."""
    server = request.app.state.server
    return JSONResponse(
        {
            "status": "ok",
            "model_id": server.scorer.model_id,
            "random_weights": server.scorer.random_weights,
            "sessions": len(server.sessions),
            "queue_depth": server.scheduler.depth if server.scheduler else 0,
        }
    )


async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    server = request.app.state.server
    server.metrics.queue_depth.set(server.scheduler.depth)
    if server.mqtt is not None:
        server.metrics.mqtt(server.mqtt.stats())
    return Response(server.metrics.render(), media_type=server.metrics.content_type)


async def sessions(request: Request) -> JSONResponse:
    """Live and recorded sessions, newest first."""
    server = request.app.state.server
    live = {s["session_id"] for s in server.live_sessions()}
    items = list_sessions(server.settings.recordings)
    for item in items:
        item["live"] = item.get("session_id") in live
    return JSONResponse({"sessions": items})


async def session(request: Request) -> JSONResponse:
    """One session's record (session.json plus counts)."""
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
    return FileResponse(path, media_type=media_type, filename=download and f"{sid}{download}")


async def session_audio(request: Request) -> Response:
    """The received audio of a session, as WAV."""
    return _session_file(request, "audio.wav", "audio/wav", ".wav")


async def session_events(request: Request) -> Response:
    """A session's recorded events (events.jsonl, one JSON object per line)."""
    return _session_file(request, "events.jsonl", "application/x-ndjson")


def _flag(value) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


async def predict(request: Request) -> JSONResponse:
    """Analyze an uploaded file (`file`) or `audio_path` below --audio-root, like `emostream analyze`."""
    server = request.app.state.server
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            form = await request.json()
        except ValueError:
            return _error(400, "bad_json", "the body is not valid JSON")
        upload = None
    else:
        form = await request.form()
        upload = form.get("file")
    granularity = form.get("granularity", "utterance")
    if granularity not in GRANULARITIES:
        return _error(400, "bad_request", f"granularity must be one of {', '.join(GRANULARITIES)}")
    context, embedding = form.get("context"), _flag(form.get("extract_embedding", False))
    with tempfile.TemporaryDirectory() as tmp:
        if upload is not None and hasattr(upload, "read"):
            path = Path(tmp) / Path(upload.filename or "upload").name
            path.write_bytes(await upload.read())
            source = upload.filename or "upload"
        elif form.get("audio_path"):
            root = server.settings.audio_root
            if root is None:
                return _error(403, "forbidden", "audio_path is disabled: the server has no --audio-root")
            path = (root / form["audio_path"]).resolve()
            if not path.is_relative_to(root.resolve()):
                return _error(403, "forbidden", "audio_path must lie inside the server's --audio-root")
            source = form["audio_path"]
        else:
            return _error(400, "bad_request", "send a `file` upload or an `audio_path`")
        config = server.template
        try:
            audio = await asyncio.to_thread(load, path)
            result = await asyncio.to_thread(
                analyze_audio, server.scorer, audio, source, granularity, context, config, None, server.data
            )
        except EmostreamError as exc:
            return _error(422, exc.code, str(exc))
    body = result.to_json(config.describe())
    if embedding:
        body["embedding"] = result.embedding.round(6).tolist()
    return JSONResponse(body)
