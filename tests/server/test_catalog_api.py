"""The catalog behind the HTTP API, end to end: a real server, replayed calls, paged and filtered lists,
acknowledgements the monitors see at once, deletions, and a kill -9 between a recording and its catalog row.

Calls come in through `/ws/replay` (recordings made by tests/drill_recordings.py: alerts at known
times, no model), so they go through the live paths — recorder, catalog feed, alerts, monitors.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from bench.drills import write_drill
from server_harness import replay_into, start_server, unbatched, wait_for
from stream.server.catalog import CATALOG_FILE

WATCH, ADMIN, STREAM = "w4tch", "4dmin", "str3am"


def get(server, path: str, token: str = WATCH, **params) -> httpx.Response:
    return httpx.get(f"{server.http}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)




def listed(server, **params) -> list[dict]:
    response = get(server, "/api/sessions", **params)
    assert response.status_code == 200, response.text
    return response.json()["sessions"]


@pytest.fixture(scope="module")
def floor(tiny_model_dir, tmp_path_factory):
    """A server (SQLite catalog, rights apart) and three recorded drills replayed into it."""
    tmp = tmp_path_factory.mktemp("catalog-api")
    drills = tmp / "drills"
    write_drill(drills, "line-a", metadata={"line": "A", "counsellor": "kim"}, context="crisis line")
    write_drill(drills, "line-b", metadata={"line": "B"}, parties=("caller", "agent"), alert_every=3.0)
    write_drill(drills, "quiet", alert_every=100.0)
    server = start_server(tiny_model_dir, tmp, "--watch-token", WATCH, "--admin-token", ADMIN,
                          "--stream-token", STREAM)
    try:
        replay_into(server, sorted(drills.iterdir()))
        wait_for(lambda: len(listed(server, live="false")) == 3, what="three ended sessions in the catalog")
        yield server
    finally:
        server.stop()


def test_the_session_list_pages_with_an_opaque_cursor_and_filters(floor):
    everything = listed(floor)
    ids = [s["session_id"] for s in everything]
    assert sorted(ids) == ["replay-line-a-1", "replay-line-b-1", "replay-quiet-1"]
    assert [s["started_at"] for s in everything] == sorted((s["started_at"] for s in everything), reverse=True)
    a = next(s for s in everything if s["session_id"] == "replay-line-a-1")
    assert a["metadata"] == {"line": "A", "counsellor": "kim"} and a["replay"] is True and a["live"] is False
    assert a["alerts"] == 3 and a["open_alerts"] == 3 and a["status"] == "complete"

    pages, cursor = [], None
    while True:
        body = get(floor, "/api/sessions", limit=1, **({"cursor": cursor} if cursor else {})).json()
        pages.append([s["session_id"] for s in body["sessions"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [[i] for i in ids]

    def only(**params) -> list[str]:
        return sorted(s["session_id"] for s in listed(floor, **params))

    assert only(meta="line=A") == ["replay-line-a-1"]
    assert only(meta="counsellor=kim", context="CRISIS") == ["replay-line-a-1"]
    assert only(party="agent") == ["replay-line-b-1"]
    assert only(alert="dual") == ["replay-line-a-1", "replay-line-b-1"]
    assert only(unacknowledged="true") == ["replay-line-a-1", "replay-line-b-1"]
    assert only(source="replay", live="false") == ["replay-line-a-1", "replay-line-b-1", "replay-quiet-1"]
    assert only(**{"from": "2100-01-01T00:00:00Z"}) == []


@pytest.mark.parametrize(("params", "code"), [
    ({"cursor": "not-a-cursor"}, "bad_cursor"),
    ({"limit": "0"}, "bad_filter"),
    ({"limit": "many"}, "bad_filter"),
    ({"from": "yesterday"}, "bad_filter"),
    ({"alert": "panic"}, "bad_filter"),
    ({"meta": "no-equals-sign"}, "bad_filter"),
    ({"colour": "red"}, "bad_filter"),
])
def test_a_malformed_cursor_or_filter_is_a_400_with_its_code(floor, params, code):
    response = get(floor, "/api/sessions", **params)
    assert response.status_code == 400 and response.json()["code"] == code, response.text
    assert response.json()["message"]


def test_alerts_filter_and_acknowledging_is_recorded_once_and_reaches_monitors_at_once(floor):
    alerts = get(floor, "/api/alerts", session="replay-line-b-1").json()["alerts"]
    assert {a["party"] for a in alerts} == {"caller", "agent"} and all(a["state"] == "open" for a in alerts)
    agent = get(floor, "/api/alerts", session="replay-line-b-1", party="agent").json()["alerts"]
    assert agent and all(a["party"] == "agent" for a in agent) and len(agent) < len(alerts)
    target = get(floor, "/api/alerts", session="replay-line-a-1", kind="review").json()["alerts"][0]
    url = f"{floor.http}/api/alerts/{target['id'].replace('#', '%23')}/ack"

    async def ack_while_watching():
        async with connect(f"{floor.ws}/ws/monitor?token={WATCH}") as monitor:
            assert json.loads(await monitor.recv())["type"] == "snapshot"
            async with httpx.AsyncClient(timeout=10) as client:
                sent = time.monotonic()
                first = await client.post(url, json={"note": "called back", "assignee": "sam"},
                                          headers={"Authorization": f"Bearer {WATCH}"})
                while True:
                    for message in unbatched(json.loads(await asyncio.wait_for(monitor.recv(), 5))):
                        if message["type"] == "alert_acknowledged":
                            return first, message, time.monotonic() - sent

    first, seen, delay = asyncio.run(ack_while_watching())
    assert first.status_code == 200, first.text
    acked = first.json()
    assert acked["id"] == target["id"] and acked["state"] == "acknowledged"
    assert {k: acked["ack"][k] for k in ("by", "note", "assignee")} == {"by": "watch_token", "note": "called back",
                                                                         "assignee": "sam"}
    assert seen["alert"]["id"] == target["id"] and seen["alert"]["ack"] == acked["ack"] and delay < 1.0

    again = httpx.post(url, json={"note": "me too"}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert again.status_code == 200 and again.json() == acked  # the first acknowledgement stands
    assert get(floor, "/api/alerts", state="acknowledged").json()["alerts"] == [acked]
    session = next(s for s in listed(floor) if s["session_id"] == "replay-line-a-1")
    assert (session["alerts"], session["open_alerts"]) == (3, 2)


@pytest.mark.parametrize(("body", "status", "code"), [
    (b'{"note": 5}', 400, "bad_request"),
    (b'["note"]', 400, "bad_request"),
    (b'{"note": "x", "priority": 1}', 400, "bad_request"),
    (b"{", 400, "bad_request"),
    (b'{"assignee": "' + b"a" * 201 + b'"}', 400, "bad_request"),
])
def test_a_bad_acknowledgement_is_a_400_and_changes_nothing(floor, body, status, code):
    open_one = get(floor, "/api/alerts", session="replay-line-b-1", state="open").json()["alerts"][-1]
    response = httpx.post(f"{floor.http}/api/alerts/{open_one['id'].replace('#', '%23')}/ack", content=body,
                          headers={"Authorization": f"Bearer {WATCH}", "Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert get(floor, "/api/alerts", session="replay-line-b-1", state="open").json()["alerts"][-1] == open_one


def test_an_unknown_alert_is_a_404_and_acknowledging_needs_the_watch_right(floor):
    unknown = httpx.post(f"{floor.http}/api/alerts/nobody%2399/ack", headers={"Authorization": f"Bearer {WATCH}"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    anonymous = httpx.post(f"{floor.http}/api/alerts/nobody%2399/ack")
    assert anonymous.status_code == 401
    streamer = httpx.post(f"{floor.http}/api/alerts/nobody%2399/ack", headers={"Authorization": f"Bearer {STREAM}"})
    assert (streamer.status_code, streamer.json()["code"]) == (403, "forbidden")  # sending audio is not supervising


def test_delete_removes_the_session_from_the_catalog_and_logs_who(floor):
    replay_folder = floor.recordings / "replay-quiet-1"
    assert replay_folder.is_dir()
    response = httpx.delete(f"{floor.http}/api/sessions/replay-quiet-1", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200
    wait_for(lambda: "replay-quiet-1" not in {s["session_id"] for s in listed(floor)}, what="the deletion in the catalog")
    with sqlite3.connect(floor.recordings / CATALOG_FILE) as db:
        logged = db.execute("SELECT action, credential FROM access_log WHERE session_id = 'replay-quiet-1'").fetchall()
    assert ("delete", "admin_token") in logged


def test_kill_9_between_the_recording_and_the_catalog_write_loses_nothing(tiny_model_dir, tmp_path):
    """The catalog's writes are held back (a lock on its file) while calls are recorded; kill -9; restart."""
    drills = tmp_path / "drills"
    write_drill(drills, "held-1", metadata={"line": "H"})
    write_drill(drills, "held-2", parties=("caller", "agent"))
    server = start_server(tiny_model_dir, tmp_path)
    database = server.recordings / CATALOG_FILE
    wait_for(lambda: listed(server, token="s3cret") == [], what="an empty catalog")
    lock = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # the server's catalog writes wait (or fail) from here on
        replay_into(server, sorted(drills.iterdir()))
        for sid in ("replay-held-1-1", "replay-held-2-1"):  # the recordings are complete on disk
            assert json.loads((server.recordings / sid / "session.json").read_text())["status"] == "complete"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        assert lock.execute("SELECT count(*) FROM sessions").fetchone() == (0,)  # nothing reached the catalog
    finally:
        lock.execute("ROLLBACK") if lock.in_transaction else None
        lock.close()
    again = start_server(tiny_model_dir, tmp_path)
    try:
        sessions = wait_for(lambda: (found := listed(again, token="s3cret")) and len(found) == 2 and found,
                            what="the reconciled sessions")
        assert {s["session_id"]: (s["status"], s["alerts"]) for s in sessions} == {
            "replay-held-1-1": ("complete", 3), "replay-held-2-1": ("complete", 6)}
        alerts = get(again, "/api/alerts", token="s3cret", limit=100).json()["alerts"]
        assert len(alerts) == 9 and all(a["state"] == "open" for a in alerts)
    finally:
        again.stop()
