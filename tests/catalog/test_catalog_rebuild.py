"""`emostream catalog rebuild` and `rebuild` on both databases: real recordings in, the same rows every time."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest

from catalog_helpers import DUAL, FLAGGED, REVIEW, WINDOW, WITHHELD, dump, record, write_session
from stream.cli.main import main
from stream.server.alerts import Alert, alerts_in
from stream.server.audit import AccessLog
from stream.server.catalog import Catalog, rebuild
from stream.server.catalog.schema import access_log
from stream.server.recording import SessionRecorder


def _record_real(root, session_id, events, parties=None, keep_audio=True, metadata=None):
    """A session recorded by the server's own SessionRecorder, closed as a normal stop closes it."""
    info = {"source": "native", "encoding": "pcm_s16le", "channels": 1, "context": "Billing question",
            "profile": "default", "metadata": metadata or {}, "model_id": "tiny", "random_weights": True,
            "planted": None, "precision": "float32", "parameters": {"window_seconds": 0.4}, "record": "audio+events"}
    if parties:
        info["parties"] = parties
    recorder = SessionRecorder(root, session_id, 16000, "int16", info, keep_audio=keep_audio)
    for party in parties or [None]:
        recorder.write_audio(np.zeros(1600, np.int16), party)
    for event in events:
        recorder.write_event(event)
    recorder.close({"session_id": session_id, "events": {"review": 1}}, status="complete")


def _events_of(folder):
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def _make_recordings(root):
    """Three real recordings (one split into parties, one without audio) and an access log."""
    _record_real(root, "call-1", [WINDOW, REVIEW, WINDOW, FLAGGED, DUAL], metadata={"customer": "c1"})
    _record_real(root, "call-2", [{**REVIEW, "party": "caller"}, {**WINDOW, "party": "agent"},
                                  {**WITHHELD, "party": "agent"}], parties=["caller", "agent"])
    _record_real(root, "call-3", [WINDOW, WINDOW], keep_audio=False)
    log = AccessLog(root)
    log.record("download", "call-1", "watch", "127.0.0.1", file="audio.wav")
    log.record("delete", "call-0", "admin", "10.0.0.2", reason="request")
    return root


@pytest.fixture()
def recordings(backend):
    """The recordings of `_make_recordings` beside the backend's catalog."""
    return _make_recordings(backend.recordings)


def test_rebuild_indexes_sessions_alerts_and_the_access_log(backend, recordings):
    async def body(catalog):
        report = await rebuild(catalog, recordings)
        sessions = (await catalog.sessions()).items
        alerts = (await catalog.alerts(limit=500)).items
        async with catalog.engine.connect() as conn:
            logged = (await conn.execute(access_log.select().order_by(access_log.c.time))).mappings().all()
        return report, sessions, alerts, logged

    report, sessions, alerts, logged = backend.run(body)
    assert (report.indexed, report.alerts, report.removed, report.access_entries) == (3, 5, 0, 2)
    by_id = {item["session_id"]: item for item in sessions}
    assert set(by_id) == {"call-1", "call-2", "call-3"}
    for sid, item in by_id.items():
        on_disk = json.loads((recordings / sid / "session.json").read_text())
        assert {k: item[k] for k in on_disk if k != "parameters"} == {k: v for k, v in on_disk.items() if k != "parameters"}
    assert by_id["call-2"]["parties"] == ["caller", "agent"] and by_id["call-3"]["audio_kept"] is False
    expected = [a for sid in by_id for a in alerts_in(sid, _events_of(recordings / sid))]
    assert sorted(a["id"] for a in alerts) == sorted(a.id for a in expected) == [
        "call-1#1", "call-1#2", "call-1#3", "call-2#1", "call-2#2"]
    found = {a["id"]: a for a in alerts}
    for alert in expected:
        assert {k: found[alert.id][k] for k in alert.to_dict()} == alert.to_dict()
    assert (found["call-2#2"]["party"], found["call-2#2"]["kind"]) == ("agent", "withheld")
    assert (by_id["call-1"]["alerts"], by_id["call-1"]["open_alerts"]) == (3, 3)
    assert [(r["action"], r["session_id"], r["credential"], r["client"], r["details"]) for r in logged] == [
        ("download", "call-1", "watch", "127.0.0.1", {"file": "audio.wav"}),
        ("delete", "call-0", "admin", "10.0.0.2", {"reason": "request"})]


def test_rebuilding_twice_changes_nothing_and_keeps_acknowledgements(backend, recordings):
    async def body(catalog):
        await rebuild(catalog, recordings)
        first = await dump(catalog)
        second_report = await rebuild(catalog, recordings)
        second = await dump(catalog)
        await catalog.acknowledge("call-1#2", "alice", note="seen", assignee="bob")
        acked = await dump(catalog)
        await rebuild(catalog, recordings)
        return first, second, second_report, acked, await dump(catalog), await catalog.alert("call-1#2")

    first, second, second_report, acked, after, alert = backend.run(body)
    assert first == second and second_report.access_entries == 0
    assert acked != second and after == acked
    assert (alert["state"], alert["ack"]["by"], alert["ack"]["note"], alert["ack"]["assignee"]) == (
        "acknowledged", "alice", "seen", "bob")


def test_rebuild_follows_the_folder(backend, recordings):
    """Gone folders and unreadable session.json leave; alerts a crash kept from the file go, a live session's stay."""
    async def body(catalog):
        await rebuild(catalog, recordings)
        write_session(recordings, record("live-1", status="live"), [REVIEW])
        await rebuild(catalog, recordings)
        await catalog.add_alert(Alert("live-1#2", "live-1", 2, "dual", None, 9.0, "fired after the rebuild read the file"))
        await catalog.add_alert(Alert("call-3#1", "call-3", 1, "dual", None, 1.0, "never reached the recording"))
        shutil.rmtree(recordings / "call-1")
        (recordings / "call-2" / "session.json").write_text("{torn")
        report = await rebuild(catalog, recordings)
        ids = [item["session_id"] for item in (await catalog.sessions()).items]
        alerts = sorted(a["id"] for a in (await catalog.alerts()).items)
        return report, ids, alerts

    report, ids, alerts = backend.run(body)
    assert report.removed == 2
    assert sorted(ids) == ["call-3", "live-1"]
    assert alerts == ["live-1#1", "live-1#2"]


def test_the_command_rebuilds_the_sqlite_file_beside_the_recordings(tmp_path, capsys, monkeypatch):
    recordings = _make_recordings(tmp_path / "recordings")
    monkeypatch.delenv("EMOSTREAM_CATALOG", raising=False)
    assert main(["catalog", "rebuild", "--recordings", str(recordings)]) == 0
    out = capsys.readouterr().out
    assert (recordings / ".catalog.sqlite3").is_file()
    assert ".catalog.sqlite3: 3 session(s) indexed with 5 alert(s), 0 removed, 2 access-log entries added" in out
    assert main(["catalog", "rebuild", "--recordings", str(recordings)]) == 0
    assert "0 access-log entries added" in capsys.readouterr().out


def test_the_command_takes_the_catalog_from_the_option_or_the_environment(recordings, capsys, monkeypatch, backend):
    monkeypatch.setenv("EMOSTREAM_CATALOG", backend.url)
    assert main(["catalog", "rebuild", "--recordings", str(recordings)]) == 0
    monkeypatch.setenv("EMOSTREAM_CATALOG", "mysql://nobody@nowhere/db")  # the option wins over it
    assert main(["catalog", "rebuild", "--recordings", str(recordings), "--catalog", backend.url]) == 0
    out = capsys.readouterr().out
    assert "3 session(s) indexed" in out and "mysql" not in out

    async def count(catalog):
        return len((await catalog.sessions()).items)

    assert backend.run(count) == 3


def test_the_command_refuses_a_missing_folder_or_an_unknown_database(tmp_path, capsys):
    assert main(["catalog", "rebuild", "--recordings", str(tmp_path / "nope")]) == 2
    assert "no recordings folder" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()  # nothing created where the user mistyped
    assert main(["catalog", "rebuild", "--recordings", str(tmp_path), "--catalog", "mysql://u:secret@h/db"]) == 2
    err = capsys.readouterr().err
    assert "SQLite or PostgreSQL" in err and "secret" not in err


def test_a_catalog_that_cannot_be_reached_is_a_clear_error(tmp_path, capsys):
    from server_harness import free_port
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/none"
    assert main(["catalog", "rebuild", "--recordings", str(tmp_path), "--catalog", url]) == 2
    err = capsys.readouterr().err
    assert "cannot open the catalog" in err and "secret" not in err


def test_concurrent_rebuilds_agree(backend, recordings):
    """Several processes' rebuilds at once (a cluster's boxes): upserts, so the result is one rebuild's."""
    async def body(catalog):
        await rebuild(catalog, recordings)
        alone = await dump(catalog)
        others = [await Catalog.open(backend.url) for _ in range(3)]
        try:
            await asyncio.gather(*(rebuild(other, recordings) for other in others))
        finally:
            for other in others:
                await other.close()
        return alone, await dump(catalog)

    alone, together = backend.run(body)
    assert together == alone
