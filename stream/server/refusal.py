"""An error the layers in front of the endpoints answer: an HTTP status and a JSON body, for requests and handshakes alike.

A WebSocket handshake is refused with the same status and body as an HTTP request (401 for a missing
or wrong credential, 403 for one without the right, 421, ...) through the ASGI "WebSocket Denial
Response" extension, which uvicorn offers; a server without it can only refuse a handshake as 403.
"""

from __future__ import annotations

import json

DENIAL = "websocket.http.response"  # the ASGI extension that lets a handshake be answered with any HTTP response


async def refuse(scope, send, status: int, code: str, message: str, headers: tuple = ()) -> None:
    """Answer `status` with `{"type": "error", "code", "message"}`, an HTTP request or a WebSocket handshake."""
    if scope["type"] == "websocket" and DENIAL not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": code})  # the server answers 403
        return
    prefix = "websocket.http.response" if scope["type"] == "websocket" else "http.response"
    body = json.dumps({"type": "error", "code": code, "message": message}).encode()
    all_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    if status == 401:
        all_headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": f"{prefix}.start", "status": status, "headers": all_headers})
    await send({"type": f"{prefix}.body", "body": body})


__all__ = ["DENIAL", "refuse"]
