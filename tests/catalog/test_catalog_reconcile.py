"""`reconcile` at server start on both databases: after a crash the catalog ends as a rebuild would make it."""

from __future__ import annotations

import json
import shutil

import numpy as np

from catalog_helpers import DUAL, FLAGGED, REVIEW, WINDOW, dump, record, write_session
from stream.server.alerts import alerts_in
from stream.server.audit import AccessLog
from stream.server.catalog import rebuild, reconcile
from stream.server.recording import SessionRecorder, repair

EVENT_FIELDS = ("id", "session_id", "seq", "kind", "party", "stream_time", "text")


def _folders(root):
    write_session(root, record("kept", started=10, metadata={"customer": "c1"}), [REVIEW, WINDOW, DUAL])
    write_session(root, record("doomed", started=20), [FLAGGED])
    write_session(root, record("split", started=30, parties=["caller", "agent"]), [{**REVIEW, "party": "agent"}])


async def _events_view(catalog):
    """What the recordings decide: every session row and facet, and the alerts' recorded fields."""
    rows = await dump(catalog)
    alerts = sorted(tuple(a[k] for k in EVENT_FIELDS) for a in (await catalog.alerts(limit=500)).items)
    return {name: table for name, table in rows.items() if name not in ("alerts", "access_log")}, alerts


def test_reconcile_after_a_crash_matches_a_rebuild(backend, spare):
    """A folder written but never catalogued, a row whose folder is gone, a session the server died in."""
    root = backend.recordings
    _folders(root)

    async def body(catalog):
        await rebuild(catalog, root)
        await catalog.acknowledge("kept#1", "alice")
        # The server took a call and died mid-way: the catalog saw its start, the recording has more.
        crashed = record("crashed", started=40, status="live")
        await catalog.session_started(crashed)
        write_session(root, crashed, [REVIEW, FLAGGED])
        (root / "crashed" / "audio.wav").write_bytes(b"")  # repair rebuilds the header the crash never wrote
        repair(root / "crashed")  # what the server does first when it starts again
        write_session(root, record("unseen", started=50), [DUAL])  # the catalog write was lost
        shutil.rmtree(root / "doomed")  # deleted while the catalog was unreachable
        AccessLog(root).record("download", "kept", "watch", "127.0.0.1", file="audio.wav")
        report = await reconcile(catalog, root)
        again = await reconcile(catalog, root)
        return report, again, await _events_view(catalog), await catalog.alert("kept#1"), await catalog.session("crashed")

    report, again, reconciled, acked, crashed = backend.run(body)
    assert (report.indexed, report.removed, report.access_entries) == (2, 1, 1)  # "crashed" and "unseen"
    assert (again.indexed, again.removed, again.access_entries) == (0, 0, 0)
    assert acked["state"] == "acknowledged"
    assert crashed["status"] == "interrupted" and (crashed["alerts"], crashed["open_alerts"]) == (2, 2)

    async def fresh(catalog):
        await rebuild(catalog, root)
        await catalog.acknowledge("kept#1", "alice")  # the catalog's own knowledge, as above
        return await _events_view(catalog)

    assert reconciled == spare.run(fresh)
    assert [a for a in reconciled[1] if a[1] == "crashed"] == [
        tuple(a.to_dict()[k] for k in EVENT_FIELDS) for a in alerts_in("crashed", [REVIEW, FLAGGED])]


def test_reconcile_keeps_the_rows_of_live_sessions(backend):
    """A session live elsewhere (record none, or a replica still creating it) keeps its row without a folder."""
    root = backend.recordings
    _folders(root)

    async def body(catalog):
        await rebuild(catalog, root)
        await catalog.session_started(record("elsewhere", status="live"))
        report = await reconcile(catalog, root, live_ids={"elsewhere"})
        return report, sorted(item["session_id"] for item in (await catalog.sessions()).items)

    report, ids = backend.run(body)
    assert report.removed == 0 and ids == ["doomed", "elsewhere", "kept", "split"]


def test_reconcile_on_an_empty_catalog_indexes_everything(backend):
    root = backend.recordings
    _folders(root)

    async def body(catalog):
        report = await reconcile(catalog, root)
        return report, await dump(catalog)

    async def rebuilt(catalog):
        await rebuild(catalog, root)
        return await dump(catalog)

    report, reconciled = backend.run(body)
    assert (report.indexed, report.alerts) == (3, 4)
    assert reconciled == backend.run(rebuilt)  # the same database again: rebuild changes nothing


def test_a_session_the_live_server_catalogued_is_not_read_again(backend):
    """Start, alerts and end written as the server writes them: the next start's reconcile finds nothing to do."""
    root = backend.recordings

    async def body(catalog):
        recorder = SessionRecorder(root, "call", 8000, "int16", {"source": "twilio", "context": "Claims",
                                   "metadata": {"customer": "c9"}, "parties": ["caller", "agent"], "record": "audio+events"})
        await catalog.session_started(json.loads((root / "call" / "session.json").read_text()))
        for event in ({**REVIEW, "party": "caller"}, {**WINDOW, "party": "agent"}, {**DUAL, "party": "agent"}):
            recorder.write_event(event)
        for alert in alerts_in("call", [{**REVIEW, "party": "caller"}, {**DUAL, "party": "agent"}]):
            await catalog.add_alert(alert)
        recorder.write_audio(np.zeros(800, np.int16), "caller")
        recorder.close({"session_id": "call", "events": {"review": 1, "dual_emotion": 1}}, status="complete")
        meta = json.loads((root / "call" / "session.json").read_text())
        ended = await catalog.session_ended("call", meta["status"], meta["ended_at"], meta["duration_seconds"], meta["summary"])
        return ended, await reconcile(catalog, root), await catalog.session("call")

    ended, report, call = backend.run(body)
    assert ended is True
    assert (report.indexed, report.removed) == (0, 0)
    assert (call["status"], call["duration_seconds"], call["alerts"]) == ("complete", 0.1, 2)
