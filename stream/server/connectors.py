"""WebSocket endpoints of the JSON-then-PCM connectors: Vonage, jambonz, FreeSWITCH's audio fork.

One path per platform (`/ws/vonage`, `/ws/jambonz`, `/ws/audiofork`), so each preamble is checked
against what its platform sends and each session is recorded with its platform as source; all
three run `stream.protocol.json_pcm.JsonPcmStream` in the one socket loop (`live_ws.serve_wire`).
The access gate checks their credential like `/ws/stream`'s: `Authorization: Bearer` or `?token=`.
"""

from __future__ import annotations

from starlette.websockets import WebSocket

from stream.protocol.json_pcm import AUDIOFORK, JAMBONZ, VONAGE, Dialect, JsonPcmStream

from .live_ws import serve_wire
from .transport import WebSocketTransport

PATHS = {"/ws/vonage": VONAGE, "/ws/jambonz": JAMBONZ, "/ws/audiofork": AUDIOFORK}


async def _serve(ws: WebSocket, dialect: Dialect) -> None:
    settings = ws.app.state.server.settings
    wire = JsonPcmStream(dialect, max_message_bytes=settings.max_message_bytes)
    await serve_wire(WebSocketTransport(ws, dialect.subprotocol), wire, replies=False)


async def vonage_stream(ws: WebSocket) -> None:
    """`/ws/vonage`: Vonage Voice API websocket endpoint (docs/connectors/vonage.md)."""
    await _serve(ws, VONAGE)


async def jambonz_stream(ws: WebSocket) -> None:
    """`/ws/jambonz`: jambonz `listen` (subprotocol audio.jambonz.org; docs/connectors/jambonz.md)."""
    await _serve(ws, JAMBONZ)


async def audiofork_stream(ws: WebSocket) -> None:
    """`/ws/audiofork`: FreeSWITCH mod_audio_fork / mod_audio_stream (docs/connectors/freeswitch.md)."""
    await _serve(ws, AUDIOFORK)


ROUTES = {"/ws/vonage": vonage_stream, "/ws/jambonz": jambonz_stream, "/ws/audiofork": audiofork_stream}

__all__ = ["PATHS", "ROUTES", "audiofork_stream", "jambonz_stream", "vonage_stream"]
