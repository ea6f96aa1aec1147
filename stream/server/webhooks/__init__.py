"""Signed webhooks: alerts, acknowledgements and session starts and ends POSTed to receivers (docs/webhooks.md).

`receivers` reads and checks `--webhook URL --webhook-secret whsec_...` pairs; `signing` signs a
body as Standard Webhooks says; `payloads` turns the server's fan-out messages into webhook
payloads; `schedule` is the back-off; `store` is the durable outbox (SQLite in the recordings
folder); `delivery` runs it on the server's event loop; `api` is `/api/webhooks`. This package's
`__init__` imports nothing, so `settings` may load `receivers` without the rest.
"""
