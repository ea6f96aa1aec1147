"""CatalogFeed on both databases: the live server's writes applied in order, failures logged and passed over."""

from __future__ import annotations

import asyncio
import logging

from catalog_helpers import at, record
from stream.server.alerts import Alert
from stream.server.catalog import Catalog, CatalogFeed


def test_writes_arrive_in_the_order_they_were_made(backend):
    async def body(catalog):
        feed = CatalogFeed(catalog)
        feed.start()
        # A session's whole life, queued at once from synchronous code, as sessions and sinks do.
        feed.session_started(record("call", status="live", parties=["caller", "agent"]))
        feed.add_alert(Alert("call#1", "call", 1, "review", "caller", 1.5, "needs review"))
        feed.add_alert(Alert("call#2", "call", 2, "dual", "agent", 2.5, "dual emotion"))
        feed.session_ended("call", "complete", at(90), 90.0, {"events": {"review": 1}})
        feed.log_access({"time": at(100), "action": "download", "session_id": "call", "by": "watch", "client": None})
        feed.session_started(record("gone"))
        feed.delete_session("gone")
        await feed.close()
        return feed, await catalog.session("call"), await catalog.session("gone"), (await catalog.alerts()).items

    feed, call, gone, alerts = backend.run(body)
    assert (feed.failed, feed.dropped) == (0, 0)
    assert (call["status"], call["ended_at"], call["duration_seconds"], call["summary"]) == (
        "complete", at(90), 90.0, {"events": {"review": 1}})
    assert (call["alerts"], call["open_alerts"], call["live"]) == (2, 2, False)
    assert gone is None and [a["id"] for a in alerts] == ["call#2", "call#1"]


def test_a_failed_write_is_logged_and_the_rest_go_on(backend, caplog):
    async def body(catalog):
        feed = CatalogFeed(catalog)
        feed.start()
        feed.session_started(record("call", status="live"))
        feed.session_ended("call", "complete", "not a time", 1.0, {})  # raises in the writer task
        feed.add_alert(Alert("call#1", "call", 1, "review", None, 1.0, "needs review"))
        await feed.flush()
        failed = feed.failed
        await feed.close()
        return failed, await catalog.session("call")

    with caplog.at_level(logging.ERROR, logger="emostream.catalog"):
        failed, call = backend.run(body)
    assert failed == 1 and "session_ended failed" in caplog.text
    assert call["status"] == "live" and call["alerts"] == 1


def test_a_full_queue_drops_writes_rather_than_grow(tmp_path, caplog):
    async def body():
        catalog = await Catalog.open(str(tmp_path / "c.sqlite3"))
        feed = CatalogFeed(catalog, max_pending=2)  # not started: nothing drains the queue
        for n in range(3):
            feed.session_started(record(f"s{n}"))
        dropped = feed.dropped
        feed.start()
        await feed.close()
        ids = [item["session_id"] for item in (await catalog.sessions()).items]
        await catalog.close()
        return dropped, ids

    with caplog.at_level(logging.ERROR, logger="emostream.catalog"):
        dropped, ids = asyncio.run(body())
    assert dropped == 1 and ids == ["s1", "s0"] and "dropped" in caplog.text
