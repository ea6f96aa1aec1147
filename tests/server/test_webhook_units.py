"""Webhooks without a server: the signer against the standardwebhooks package's verifier, the secrets and
URLs it accepts, the retry schedule, the outbox file, the payloads, and the repeatable options."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import time
from datetime import datetime, timezone

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from models.errors import ConfigError
from stream.cli.options import add_analysis_options, add_server_options, analyzer_config, settings_from_args
from stream.server.webhooks.delivery import WebhookOutbox
from stream.server.webhooks.payloads import WebhookEvents
from stream.server.webhooks.receivers import Receiver, parse_secret, receivers, shown_url
from stream.server.webhooks.schedule import RetrySchedule, retry_after
from stream.server.webhooks.signing import new_message_id, sign, signed_headers
from stream.server.webhooks.store import KEEP_DEAD, NewDelivery, OutboxStore

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()


# ---- signing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b'{"type":"alert.raised","timestamp":"2026-12-05T07:00:00+00:00","data":{"id":"call-1#1"}}',
    json.dumps({"text": "flagged transition fearful → disgusted", "emoji": "😨"}, ensure_ascii=False).encode(),
    b"{}",
])
def test_every_signature_verifies_with_the_standardwebhooks_package(body):
    message_id, now = new_message_id(), int(time.time())
    headers = signed_headers(KEY, message_id, now, body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    assert headers["webhook-signature"] == Webhook(SECRET).sign(message_id, datetime.fromtimestamp(now, timezone.utc),
                                                                 body)
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-timestamp"] == str(now)
    assert "." not in message_id and message_id.startswith("msg_")


def test_a_wrong_secret_a_changed_body_or_an_old_timestamp_fail_verification():
    body, message_id, now = b'{"type":"session.started"}', new_message_id(), int(time.time())
    headers = signed_headers(KEY, message_id, now, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    stale = signed_headers(KEY, message_id, now - 3600, body)  # a retry re-signs with its own timestamp
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, stale)
    with pytest.raises(ValueError):
        sign(KEY, "msg.1", now, body)


# ---- receivers -------------------------------------------------------------------------------------
def test_secrets_and_urls_are_checked_and_paired_in_order():
    pair = receivers(("https://a.example/hook", "http://127.0.0.1:9/x"), (SECRET, OTHER))
    assert [(r.url, r.key) for r in pair] == [("https://a.example/hook", KEY), ("http://127.0.0.1:9/x", bytes(range(1, 33)))]
    assert SECRET not in repr(pair)  # a receiver's repr never shows its key
    assert parse_secret(SECRET.rstrip("=")) == KEY  # unpadded base64 is fine
    bad = [
        (("https://a/",), (), "1 --webhook but 0 --webhook-secret"),
        (("https://a/", "https://a/"), (SECRET, OTHER), "each URL once"),
        (("ftp://a/",), (SECRET,), "http:// or https://"),
        (("https:///path",), (SECRET,), "with a host"),
        (("https://a:99999/",), (SECRET,), "not a URL"),
        (("https://a/",), ("s3cret",), "must start with whsec_"),
        (("https://a/",), ("whsec_not base64!",), "base64"),
        (("https://a/",), ("whsec_" + base64.b64encode(b"short").decode(),), "24 to 64 bytes"),
        (("https://a/",), ("whsec_" + base64.b64encode(bytes(65)).decode(),), "24 to 64 bytes"),
    ]
    for urls, secrets, says in bad:
        with pytest.raises(ConfigError, match=says) as caught:
            receivers(urls, secrets)
        assert "not base64!" not in str(caught.value)  # a wrong secret is never echoed


def test_shown_urls_hide_passwords_and_query_strings():
    assert shown_url("https://user:pw@hooks.example:8443/in?token=abc") == "https://user:***@hooks.example:8443/in?***"
    assert shown_url("http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"


# ---- the retry schedule ----------------------------------------------------------------------------
def test_the_back_off_doubles_up_to_its_ceiling_and_honours_retry_after():
    exact = RetrySchedule(first=2.0, factor=2.0, ceiling=300.0, jitter=0.0)
    assert [exact.delay(n) for n in range(1, 12)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert exact.delay(0) == 0.0 and exact.delay(10_000) == 300.0
    assert exact.delay(3, retry_after=42) == 42 and exact.delay(3, retry_after=3600) == 300.0
    jittered, rng = RetrySchedule(jitter=0.2), random.Random(7)
    for n in range(1, 15):
        base = min(2.0 * 2 ** (n - 1), 300.0)
        assert all(0.8 * base <= jittered.delay(n, rng=rng) <= base for _ in range(50))
    assert not exact.dead(24 * 3600 - 1) and exact.dead(24 * 3600)
    with pytest.raises(ValueError):
        RetrySchedule(first=10, ceiling=5)


def test_an_hour_long_outage_is_retried_at_most_the_ceiling_apart():
    """The receiver is back after an hour: the next attempt comes at most `ceiling` later, far before giving up."""
    schedule, rng, elapsed, attempts = RetrySchedule(), random.Random(1), 0.0, 0
    while elapsed < 3600:
        attempts += 1
        elapsed += schedule.delay(attempts, rng=rng)
    assert elapsed - 3600 <= schedule.ceiling and not schedule.dead(elapsed)
    assert 12 <= attempts <= 25  # about 8 doubling steps, then one every 4-5 minutes


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 12, 5, 8, 0, tzinfo=timezone.utc)
    assert retry_after("120") == 120.0
    assert retry_after("Sat, 05 Dec 2026 08:01:30 GMT", now) == 90.0
    assert retry_after("Sat, 05 Dec 2026 07:00:00 GMT", now) == 0.0
    assert retry_after(None) is None and retry_after("soon") is None


# ---- the outbox file -------------------------------------------------------------------------------
def _rows(receiver: str, n: int, start: float = 1000.0) -> list[NewDelivery]:
    return [NewDelivery(receiver, f"msg_{receiver[-1]}{i}", "alert.raised", json.dumps({"n": i}), start + i)
            for i in range(n)]


def test_the_outbox_keeps_each_receivers_order_and_survives_reopening(tmp_path):
    path = tmp_path / ".webhooks.sqlite3"
    store = OutboxStore(path)
    store.add(_rows("http://a", 3) + _rows("http://b", 2))
    store.add(_rows("http://a", 1))  # the same webhook id for the same receiver is kept once
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [d.message_id for d in store.pending("http://a")] == ["msg_a0", "msg_a1", "msg_a2"]
    head = store.pending("http://a")[0]
    store.failed(head.id, 1, 5000.0, 503, "HTTP 503 Service Unavailable", 1001.0)
    store.delivered(store.pending("http://b")[0].id)
    store.close()

    store = OutboxStore(path)  # as after kill -9 and a restart
    a = store.pending("http://a")
    assert [(d.message_id, d.attempts, d.last_status) for d in a] == [("msg_a0", 1, 503), ("msg_a1", 0, None),
                                                                       ("msg_a2", 0, None)]
    store.due_now(2000.0)
    assert store.pending("http://a")[0].next_at == 2000.0
    assert store.counts() == {"http://a": {"pending": 3, "dead": 0, "oldest_pending": 1000.0},
                              "http://b": {"pending": 1, "dead": 0, "oldest_pending": 1001.0}}
    store.close()


def test_dead_letters_are_listed_newest_first_and_can_be_revived(tmp_path):
    store = OutboxStore(tmp_path / "o.sqlite3")
    store.add(_rows("http://a", 3))
    first, second, third = store.pending("http://a")
    store.bury(first.id, 7, None, "ConnectError", 3000.0)
    store.bury(second.id, 9, 500, "HTTP 500", 3001.0)
    assert [d.message_id for d in store.dead_letters()] == ["msg_a1", "msg_a0"]
    assert [d.message_id for d in store.pending("http://a")] == ["msg_a2"]
    revived = store.revive(first.id, 4000.0)
    assert (revived.state, revived.attempts, revived.since, revived.created_at) == ("pending", 0, 4000.0, 1000.0)
    assert store.revive(first.id, 4000.0) is None and store.revive(12345, 4000.0) is None  # only dead letters
    assert [d.message_id for d in store.pending("http://a")] == ["msg_a0", "msg_a2"]  # its place in the order
    assert store.counts()["http://a"] == {"pending": 2, "dead": 1, "oldest_pending": 1000.0}
    assert KEEP_DEAD >= 1000
    store.close()


# ---- payloads --------------------------------------------------------------------------------------
def test_messages_become_standard_webhooks_payloads():
    events = WebhookEvents(clock=lambda: "2026-12-05T08:00:00+00:00")
    started = {"type": "session_started", "session_id": "replay-a-1", "source": "replay", "replay": True,
               "started_at": "2026-12-05T07:59:00+00:00", "context": "crisis line", "profile": "general",
               "metadata": {"line": "A"}, "random_weights": True, "planted": None, "info": {}, "infos": {}}
    alert = {"id": "replay-a-1#1", "session_id": "replay-a-1", "seq": 1, "kind": "review", "party": None,
             "stream_time": 1.2, "text": "needs review", "at": "2026-12-05T07:59:02+00:00", "state": "open", "ack": None}
    ack = {**alert, "state": "acknowledged",
           "ack": {"by": "watch_token", "at": "2026-12-05T08:01:00+00:00", "note": None, "assignee": None}}
    payloads = [events.payload(m) for m in (
        started, {"type": "window", "session_id": "replay-a-1"}, {"type": "alert", "alert": alert},
        {"type": "session_ended", "session_id": "replay-a-1", "summary": {"status": "complete"}, "replay": True},
        {"type": "alert_acknowledged", "alert": ack}, {"type": "digest"})]
    assert payloads[1] is None and payloads[5] is None
    start, raised, ended, acked = payloads[0], payloads[2], payloads[3], payloads[4]
    assert (start["type"], start["timestamp"]) == ("session.started", "2026-12-05T07:59:00+00:00")
    assert start["data"] == {"session_id": "replay-a-1", "source": "replay", "started_at": "2026-12-05T07:59:00+00:00",
                             "context": "crisis line", "profile": "general", "metadata": {"line": "A"}, "parties": [],
                             "replay": True, "random_weights": True, "planted": None}
    assert raised == {"type": "alert.raised", "timestamp": alert["at"], "data": {**alert, "replay": True}}
    assert ended["type"] == "session.ended" and ended["data"] == {**start["data"], "ended_at": "2026-12-05T08:00:00+00:00",
                                                                   "summary": {"status": "complete"}}
    assert acked == {"type": "alert.acknowledged", "timestamp": "2026-12-05T08:01:00+00:00",
                     "data": {**ack, "replay": True}}


# ---- the repeatable options ------------------------------------------------------------------------
def _settings(argv: list[str]):
    parser = argparse.ArgumentParser()
    add_analysis_options(parser)
    add_server_options(parser)
    args = parser.parse_args(argv)
    return settings_from_args(args, analyzer_config(args)), parser


def test_webhook_options_repeat_pair_in_order_and_read_whitespace_separated_environment(monkeypatch):
    monkeypatch.delenv("EMOSTREAM_WEBHOOK", raising=False)
    monkeypatch.delenv("EMOSTREAM_WEBHOOK_SECRET", raising=False)
    settings, _ = _settings(["--webhook", "https://a/", "--webhook-secret", SECRET,
                             "--webhook", "https://b/", "--webhook-secret", OTHER])
    assert (settings.webhook, settings.webhook_secret) == (("https://a/", "https://b/"), (SECRET, OTHER))
    settings.check()
    assert _settings([])[0].webhook == ()

    monkeypatch.setenv("EMOSTREAM_WEBHOOK", "https://env-a/\n https://user:pw@env-b/")
    monkeypatch.setenv("EMOSTREAM_WEBHOOK_SECRET", f"{SECRET} {OTHER}")
    from_env, parser = _settings([])
    assert (from_env.webhook, from_env.webhook_secret) == (("https://env-a/", "https://user:pw@env-b/"), (SECRET, OTHER))
    shown = parser.format_help()
    assert SECRET not in shown and OTHER not in shown and "pw@" not in shown and "user:***@env-b" in shown
    given, _ = _settings(["--webhook", "https://cli/", "--webhook-secret", SECRET])  # the command line replaces
    assert (given.webhook, given.webhook_secret) == (("https://cli/",), (SECRET,))
    with pytest.raises(ConfigError, match="2 --webhook but 1 --webhook-secret"):
        _settings(["--webhook-secret", SECRET])[0].check()


def test_a_serve_config_holds_no_webhook_secret_and_ray_refuses_webhooks():
    pytest.importorskip("ray")
    from stream.cluster.launch import check_settings, server_values, settings_from_mapping

    with pytest.raises(ConfigError, match="webhook_secret"):
        server_values({"webhook": ["https://a/"], "webhook_secret": [SECRET]}, {}, None)
    values = server_values({"webhook": ["https://a/"]}, {"EMOSTREAM_WEBHOOK_SECRET": SECRET}, None)
    settings = settings_from_mapping(values)
    assert (settings.webhook, settings.webhook_secret) == (("https://a/",), (SECRET,))
    with pytest.raises(ConfigError, match="not supported on Ray"):
        check_settings(settings)


def test_the_generated_secret_command_in_the_error_makes_a_valid_secret():
    made = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    assert len(parse_secret(made)) == 32


# ---- the outbox on an event loop, against an in-process receiver ----------------------------------
def test_the_outbox_retries_in_order_follows_no_redirect_and_buries_on_410(tmp_path):
    """503 (Retry-After: 0) and a 302 are failed attempts of the head, which the next waits behind; 410 buries."""
    answers = {"session.started": [503, 302, 200], "alert.raised": [410]}
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        payload = Webhook(SECRET).verify(request.content, dict(request.headers))
        seen.append((payload["type"], request.headers["webhook-id"]))
        status = answers[payload["type"]].pop(0)
        headers = {"retry-after": "0"} if status == 503 else {"location": "http://elsewhere/"} if status == 302 else {}
        return httpx.Response(status, headers=headers)

    async def run() -> dict:
        outbox = await WebhookOutbox.open(tmp_path, (Receiver("http://r.test/hook", KEY),),
                                          RetrySchedule(first=0.01, ceiling=0.05), timeout=5.0)
        await outbox.client.aclose()
        outbox.client = httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=False)
        outbox.send({"type": "session_started", "session_id": "s1", "started_at": "2026-12-05T08:00:00+00:00"})
        outbox.send({"type": "alert", "alert": {"id": "s1#1", "session_id": "s1", "at": "2026-12-05T08:00:01+00:00"}})
        outbox.send({"type": "window", "session_id": "s1"})  # makes no webhook
        await outbox.flush()  # in the outbox file: pending until taken
        for _ in range(200):
            status = await outbox.status()
            if status["receivers"][0]["pending"] == 0:
                break
            await asyncio.sleep(0.02)
        await outbox.close()
        return status

    status = asyncio.run(run())
    assert [t for t, _ in seen] == ["session.started"] * 3 + ["alert.raised"]  # the alert waited for the start
    assert len({i for t, i in seen if t == "session.started"}) == 1  # one webhook-id on every attempt
    receiver = status["receivers"][0]
    assert (receiver["pending"], receiver["dead"], receiver["delivered"], receiver["failed_attempts"]) == (0, 1, 1, 3)
    (dead,) = status["dead_letters"]
    assert (dead["type"], dead["attempts"], dead["last_status"]) == ("alert.raised", 1, 410)
    assert dead["payload"]["data"]["id"] == "s1#1" and "Gone" in dead["last_error"]
