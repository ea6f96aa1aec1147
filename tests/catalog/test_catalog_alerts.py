"""Alerts on both databases: recorded as they fire, listed by state/kind/session/party/time, acknowledged once."""

from __future__ import annotations

import asyncio

import pytest

from catalog_helpers import at, record
from stream.server.alerts import Alert
from stream.server.catalog import AlertFilters, CatalogQueryError, alert_request


def _alert(session_id: str, seq: int, kind: str = "review", party: str | None = None, time: float = 1.0) -> Alert:
    return Alert(f"{session_id}#{seq}", session_id, seq, kind, party, time, f"{kind} at {time}")


async def _fill(catalog):
    """Two sessions, six alerts fired a second apart: s1#1 first, s2#3 last."""
    await catalog.session_started(record("s1", parties=["caller", "agent"]))
    await catalog.session_started(record("s2", started=100))
    fired = [_alert("s1", 1, "review", "caller"), _alert("s1", 2, "flagged", "agent"), _alert("s2", 1, "dual"),
             _alert("s1", 3, "withheld", "caller"), _alert("s2", 2, "review"), _alert("s2", 3, "flagged")]
    for n, alert in enumerate(fired):
        assert await catalog.add_alert(alert, created_at=at(200 + n)) is True


def test_alerts_are_listed_newest_first_with_every_filter(backend):
    async def body(catalog):
        await _fill(catalog)
        await catalog.acknowledge("s1#2", "sup")
        out = {}
        for name, f in {
            "all": AlertFilters(), "open": AlertFilters(state="open"), "acked": AlertFilters(state="acknowledged"),
            "review": AlertFilters(kind="review"), "s1": AlertFilters(session_id="s1"),
            "caller": AlertFilters(party="caller"), "window": AlertFilters(created_from=at(201), created_to=at(203)),
            "open flagged": AlertFilters(state="open", kind="flagged"),
        }.items():
            out[name] = [a["id"] for a in (await catalog.alerts(f)).items]
        return out

    got = backend.run(body)
    assert got["all"] == ["s2#3", "s2#2", "s1#3", "s2#1", "s1#2", "s1#1"]
    assert got["open"] == ["s2#3", "s2#2", "s1#3", "s2#1", "s1#1"]
    assert got["acked"] == ["s1#2"]
    assert got["review"] == ["s2#2", "s1#1"]
    assert got["s1"] == ["s1#3", "s1#2", "s1#1"]
    assert got["caller"] == ["s1#3", "s1#1"]
    assert got["window"] == ["s2#1", "s1#2"]
    assert got["open flagged"] == ["s2#3"]


def test_alert_pages_hold_every_alert_once(backend):
    async def body(catalog):
        await catalog.session_started(record("s1"))
        for n in range(1, 24):  # several alerts share an instant: the id breaks the tie
            await catalog.add_alert(_alert("s1", n), created_at=at(n // 4))
        ids, cursor = [], None
        while True:
            page = await catalog.alerts(limit=5, cursor=cursor)
            ids += [a["id"] for a in page.items]
            if not (cursor := page.next_cursor):
                return ids

    ids = backend.run(body)
    assert sorted(ids) == sorted(f"s1#{n}" for n in range(1, 24)) and len(set(ids)) == 23


def test_an_alert_is_what_fired_and_firing_it_twice_changes_nothing(backend):
    async def body(catalog):
        await catalog.session_started(record("s1"))
        first = await catalog.add_alert(_alert("s1", 1, "dual", "agent", 2.5))
        again = await catalog.add_alert(Alert("s1#1", "s1", 1, "review", None, 9.0, "other text"))
        orphan = await catalog.add_alert(_alert("ghost", 1))  # its session is not in the catalog
        return first, again, orphan, await catalog.alert("s1#1"), await catalog.alert("s1#2"), await catalog.session("s1")

    first, again, orphan, alert, missing, session = backend.run(body)
    assert (first, again, orphan, missing) == (True, False, False, None)
    assert {k: alert[k] for k in ("id", "session_id", "seq", "kind", "party", "stream_time", "text", "state")} == {
        "id": "s1#1", "session_id": "s1", "seq": 1, "kind": "dual", "party": "agent", "stream_time": 2.5,
        "text": "dual at 2.5", "state": "open"}
    assert alert["at"].endswith("+00:00") and alert["ack"] is None
    assert (session["alerts"], session["open_alerts"]) == (1, 1)


def test_acknowledging_twice_returns_the_first_acknowledgement_unchanged(backend):
    async def body(catalog):
        await _fill(catalog)
        first = await catalog.acknowledge("s1#1", "alice", note="checked the call", assignee="bob")
        second = await catalog.acknowledge("s1#1", "carol", note="me too", assignee="dave")
        with pytest.raises(KeyError):
            await catalog.acknowledge("s1#99", "alice")
        return first, second, await catalog.session("s1")

    (alert, was_first), (again, was_first_again), session = backend.run(body)
    assert was_first is True and was_first_again is False
    assert alert["state"] == "acknowledged" and alert["ack"]["at"].endswith("+00:00")
    assert {k: alert["ack"][k] for k in ("by", "note", "assignee")} == {
        "by": "alice", "note": "checked the call", "assignee": "bob"}
    assert again == alert  # the second caller sees who acknowledged it first, and when
    assert (session["alerts"], session["open_alerts"]) == (3, 2)


def test_racing_acknowledgements_have_exactly_one_winner(backend):
    async def body(catalog):
        await _fill(catalog)
        results = await asyncio.gather(*(catalog.acknowledge("s2#1", f"user{n}") for n in range(6)))
        return results

    results = backend.run(body)
    winners = [alert for alert, first in results if first]
    assert len(winners) == 1
    assert all(alert == winners[0] for alert, _ in results)


def test_deleting_a_session_deletes_its_alerts(backend):
    async def body(catalog):
        await _fill(catalog)
        deleted = await catalog.delete_session("s1")
        again = await catalog.delete_session("s1")
        return deleted, again, [a["id"] for a in (await catalog.alerts()).items]

    deleted, again, left = backend.run(body)
    assert (deleted, again) == (True, False)
    assert left == ["s2#3", "s2#2", "s2#1"]


def test_alert_query_strings_and_their_errors():
    request = alert_request([("state", "open"), ("kind", "dual"), ("session", "s1"), ("party", "caller"),
                             ("from", "2025-03-01"), ("to", "2025-03-02"), ("limit", "5")])
    assert request.filters == AlertFilters(state="open", kind="dual", session_id="s1", party="caller",
                                           created_from="2025-03-01T00:00:00.000000+00:00",
                                           created_to="2025-03-02T00:00:00.000000+00:00")
    assert request.limit == 5
    for items, says in (([("state", "closed")], "state must be one of open, acknowledged"),
                        ([("kind", "x")], "kind must be one of"), ([("meta", "a=b")], "unknown parameter 'meta'"),
                        ([("from", "later")], "from must be an ISO 8601 time")):
        with pytest.raises(CatalogQueryError) as info:
            alert_request(items)
        assert info.value.code == "bad_filter" and says in info.value.message, items
