"""`/api/webhooks`: each receiver's delivery status and the dead letters (watch right); sending one again (admin)."""

from __future__ import annotations

import sqlite3

from starlette.requests import Request
from starlette.responses import JSONResponse

from .delivery import ReceiverGone


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status)


def _unavailable() -> JSONResponse:
    return _error(503, "outbox_unavailable", "the webhook outbox cannot be read; try again (the server log says why)")


async def status(request: Request) -> JSONResponse:
    """Each webhook receiver's status and the newest dead letters (docs/webhooks.md).
    ---
    summary: Webhook receivers and dead letters (watch right)
    description: >-
      One entry per --webhook receiver (and per receiver no longer configured that still has deliveries in the
      outbox): pending and dead counts, and what this server saw of it since it started. `dead_letters` are the
      newest 100 deliveries given up, newest first. Without --webhook both lists are empty.
    responses:
      200:
        description: the receivers and the newest dead letters
        content:
          application/json:
            schema: {$ref: '#/components/schemas/WebhookStatus'}
      503:
        $ref: '#/components/responses/OutboxUnavailable'
    """
    outbox = request.app.state.server.webhooks
    if outbox is None:
        return JSONResponse({"receivers": [], "dead_letters": []})
    try:
        return JSONResponse(await outbox.status())
    except sqlite3.Error:
        return _unavailable()


async def retry(request: Request) -> JSONResponse:
    """Queue a dead letter again: same webhook-id, attempts and give-up age from zero.
    ---
    summary: Send a dead letter again (admin right)
    parameters:
      - name: delivery_id
        in: path
        required: true
        description: "the dead letter's `id` in GET /api/webhooks"
        schema: {type: integer, minimum: 1, maximum: 9223372036854775807}
    responses:
      200:
        description: the delivery, pending again
        content:
          application/json:
            schema: {$ref: '#/components/schemas/WebhookDelivery'}
      404:
        description: "`not_found`: no dead letter of that id (none, delivered, or already queued again)"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      409:
        description: "`receiver_not_configured`: its receiver is no longer a --webhook of this server"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      503:
        $ref: '#/components/responses/OutboxUnavailable'
    """
    outbox = request.app.state.server.webhooks
    text = request.path_params["delivery_id"]
    delivery_id = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
    if outbox is None or delivery_id is None:
        return _error(404, "not_found", "no such dead letter")
    try:
        revived = await outbox.retry(delivery_id)
    except ReceiverGone as exc:
        return _error(409, "receiver_not_configured", f"its receiver {exc} is no longer configured (--webhook)")
    except sqlite3.Error:
        return _unavailable()
    if revived is None:
        return _error(404, "not_found", "no such dead letter")
    return JSONResponse(revived)


_TIME = {"type": "string", "format": "date-time", "nullable": True}
_EVENT_TYPES = ["session.started", "alert.raised", "alert.acknowledged", "session.ended"]

# Added to http_api.COMPONENTS["schemas"].
SCHEMAS = {
    "WebhookStatus": {
        "type": "object", "required": ["receivers", "dead_letters"],
        "properties": {
            "receivers": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookReceiver"}},
            "dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookDelivery"},
                             "description": "the newest 100 dead letters, newest first"},
        },
    },
    "WebhookReceiver": {
        "type": "object", "required": ["receiver", "configured", "pending", "dead", "oldest_pending_at"],
        "properties": {
            "receiver": {"type": "string", "description": "its URL; a password and the query string shown as ***"},
            "configured": {"type": "boolean", "description": "false: no longer a --webhook, its rows remain"},
            "pending": {"type": "integer", "minimum": 0, "description": "deliveries not yet taken"},
            "dead": {"type": "integer", "minimum": 0, "description": "dead letters kept"},
            "oldest_pending_at": {**_TIME, "description": "when the oldest pending delivery was queued"},
            "state": {"type": "string", "enum": ["idle", "sending", "waiting"],
                      "description": "waiting: for the next attempt after a failure"},
            "delivered": {"type": "integer", "minimum": 0, "description": "since this server started"},
            "failed_attempts": {"type": "integer", "minimum": 0, "description": "since this server started"},
            "last_success_at": _TIME, "last_failure_at": _TIME,
            "last_status": {"type": "integer", "nullable": True, "description": "HTTP status of the last failure"},
            "last_error": {"type": "string", "nullable": True},
            "next_attempt_at": _TIME,
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "receiver", "webhook_id", "type", "state", "created_at", "attempts", "last_status",
                     "last_error", "failed_at", "payload"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "description": "for POST /api/webhooks/dead/{id}/retry"},
            "receiver": {"type": "string"},
            "webhook_id": {"type": "string", "description": "the webhook-id header: the same on every attempt"},
            "type": {"type": "string", "enum": _EVENT_TYPES},
            "state": {"type": "string", "enum": ["dead", "pending"]},
            "created_at": {"type": "string", "format": "date-time"},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status": {"type": "integer", "nullable": True},
            "last_error": {"type": "string", "nullable": True},
            "failed_at": _TIME,
            "payload": {"type": "object", "required": ["type", "timestamp", "data"],
                        "description": "the body as sent (docs/webhooks.md)"},
        },
    },
}

__all__ = ["SCHEMAS", "retry", "status"]
