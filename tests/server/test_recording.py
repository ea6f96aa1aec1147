"""Session recordings on real files: round trips, SIGKILL mid-recording, repair, listing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile

from models.errors import AudioError, ConfigError
from stream.server.recording import (
    AUDIO_FILE,
    EVENTS_FILE,
    SAMPLE_FORMATS,
    SESSION_FILE,
    SessionRecorder,
    list_sessions,
    load_session,
    repair,
    validate_session_id,
)

REPO = Path(__file__).resolve().parents[2]
PIECE_SECONDS = 0.02


def known_signal(start: int, stop: int, sample_format: str) -> np.ndarray:
    """Samples start..stop of a signal whose values depend on their index (exact in both types)."""
    n = np.arange(start, stop, dtype=np.int64)
    if sample_format == "int16":
        return ((n * 7919) % 65536 - 32768).astype(np.int16)
    return (((n * 7919) % 65536 - 32768) / 32768.0).astype(np.float32)  # k / 2**15: exact


def record_forever(root: str, session_id: str, sample_format: str, rate: str) -> None:
    """Body of the child process: record 20 ms pieces in real time until killed."""
    info = {"context": "kill test"}
    rec = SessionRecorder(Path(root), session_id, int(rate), sample_format, info)
    piece = round(int(rate) * PIECE_SECONDS)
    print("ready", flush=True)
    t0, i = time.monotonic(), 0
    while True:
        rec.write_audio(known_signal(i * piece, (i + 1) * piece, sample_format))
        rec.write_event({"type": "piece", "index": i, "samples": rec.samples_written})
        print(rec.samples_written, flush=True)  # the test's lower bound on what was written
        i += 1
        time.sleep(max(0.0, t0 + i * PIECE_SECONDS - time.monotonic()))


def record_until_full(root: str, session_id: str, limit: str) -> None:
    """Body of a child process whose files may not grow past `limit` bytes (a full disk)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
    rec = SessionRecorder(Path(root), session_id, 8000, "int16", {}, flush_seconds=0.1)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.RLIM_INFINITY))
    i = 0
    try:
        while True:
            rec.write_audio(known_signal(i * 1000, (i + 1) * 1000, "int16"))
            rec.write_event({"index": i})
            i += 1
    except OSError as exc:
        print("failed", exc.errno, rec.samples_written, flush=True)
    try:
        rec.write_audio(known_signal(0, 10, "int16"))
    except ValueError as exc:
        print(exc, flush=True)
    rec.close({"pieces": i})


def child_command(function: str, *args: str) -> list[str]:
    """A fresh interpreter that imports stream.server.recording (via this file) and runs `function`."""
    code = f"import sys; sys.path[:0] = sys.argv[1:3]\nfrom test_recording import {function}\n"
    code += f"{function}(*sys.argv[3:])"
    return [sys.executable, "-c", code, str(REPO), str(Path(__file__).parent), *args]


def read_wav(path: Path, sample_format: str) -> np.ndarray:
    """Decode with independent readers: the stdlib for PCM, libsndfile for IEEE float."""
    if sample_format == "int16":
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")
    info = soundfile.info(str(path))
    assert (info.channels, info.subtype) == (1, "FLOAT")
    samples, _ = soundfile.read(str(path), dtype="float32", always_2d=False)
    return samples


def header_sizes(path: Path, sample_format: str) -> tuple[int, int]:
    """(RIFF size, data size) as the header states them."""
    raw = path.read_bytes()[: SAMPLE_FORMATS[sample_format].header_size]
    return struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, len(raw) - 4)[0]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def event_lines(folder: Path) -> list[str]:
    # split("\n"), not splitlines(): U+2028 inside a JSON string is not a line break here.
    return folder.joinpath(EVENTS_FILE).read_text("utf-8").split("\n")


# ---- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sample_format, rate, flush_seconds", [("int16", 16000, 0.01), ("float32", 48000, 1.0)]
)
def test_round_trip_is_bit_exact(tmp_path, rng, sample_format, rate, flush_seconds):
    info = {"parameters": {"hop": 0.1}, "metadata": {"caller": "Zoë"}, "context": "triage"}
    rec = SessionRecorder(tmp_path, "call-1.a_B", rate, sample_format, info, flush_seconds)
    meta = json.loads((tmp_path / "call-1.a_B" / SESSION_FILE).read_text("utf-8"))
    assert meta["status"] == "live" and meta["sample_rate"] == rate and meta["context"] == "triage"
    assert meta["parameters"] == {"hop": 0.1} and meta["metadata"] == {"caller": "Zoë"}

    if sample_format == "int16":
        full = rng.integers(-32768, 32768, 30001).astype(np.int16)
        full[:2] = (-32768, 32767)
    else:
        full = rng.standard_normal(30001).astype(np.float32)
        # Values a 16-bit or clipping path would change: replay must keep them bit for bit.
        full[:5] = (-0.0, 1e-40, 1.5, -3.25, np.float32(1) / 3)
    sizes = [1, 7, 333, 0, 1000, 4097, 12345]
    events = [{"type": "window", "index": 0, "scores": {"angry": 0.125}}, {"text": "ça\u2028va"}]
    cuts = np.cumsum(sizes)
    for piece in np.split(full, cuts):
        rec.write_audio(piece)
        rec.write_event({"type": "piece", "n": int(piece.size)})
    for event in events:
        rec.write_event(event)
    assert rec.samples_written == full.size and rec.seconds_written == full.size / rate
    rec.close({"windows": 3})
    rec.close({"ignored": True})  # idempotent

    folder = tmp_path / "call-1.a_B"
    decoded = read_wav(folder / AUDIO_FILE, sample_format)
    assert decoded.dtype == full.dtype and decoded.tobytes() == full.tobytes()
    layout = SAMPLE_FORMATS[sample_format]
    assert (folder / AUDIO_FILE).read_bytes()[layout.header_size :] == full.tobytes()

    lines = event_lines(folder)
    assert lines[-1] == ""  # every line is terminated
    written = [{"type": "piece", "n": len(p)} for p in np.split(full, cuts)] + events
    assert [json.loads(line) for line in lines[:-1]] == written
    assert lines[-2] == '{"text":"ça\u2028va"}'  # compact, not ASCII-escaped

    meta = json.loads((folder / SESSION_FILE).read_text("utf-8"))
    assert meta["status"] == "complete" and meta["summary"] == {"windows": 3}
    assert meta["duration_seconds"] == full.size / rate
    assert meta["sample_format"] == sample_format and meta["metadata"] == {"caller": "Zoë"}
    assert datetime.fromisoformat(meta["ended_at"]) >= datetime.fromisoformat(meta["started_at"])
    assert not (folder / (SESSION_FILE + ".tmp")).exists()
    assert not repair(folder).changed  # a complete session needs nothing


def test_header_is_updated_every_flush_seconds(tmp_path):
    rec = SessionRecorder(tmp_path, "s", 8000, "int16", {}, flush_seconds=0.5)
    path = tmp_path / "s" / AUDIO_FILE
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 0  # valid from the start
    rec.write_audio(known_signal(0, 3999, "int16"))
    assert header_sizes(path, "int16") == (36, 0)  # less than 0.5 s since the last update
    rec.write_audio(known_signal(3999, 4000, "int16"))
    assert header_sizes(path, "int16") == (36 + 8000, 8000)  # 4000 samples: flushed and stated
    rec.write_audio(known_signal(4000, 4100, "int16"))
    with wave.open(str(path), "rb") as w:  # readable mid-recording, up to the last update
        seen = np.frombuffer(w.readframes(10**6), "<i2")
    assert seen.tobytes() == known_signal(0, 4000, "int16").tobytes()
    rec.close({})
    assert header_sizes(path, "int16") == (36 + 8200, 8200)


# ---- kill -9 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sample_format, rate", [("int16", 16000), ("float32", 48000)])
def test_sigkill_leaves_a_valid_recording_that_repair_completes(tmp_path, sample_format, rate):
    proc = subprocess.Popen(
        child_command("record_forever", str(tmp_path), "killed", sample_format, str(rate)),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(2.5)
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    printed = [int(line) for line in out.split("\n") if line.isdigit()]
    written = printed[-1]  # at least this much had been handed to write_audio
    piece = round(rate * PIECE_SECONDS)
    assert written >= 1.5 * rate, f"child recorded too little: {written} samples"

    # As the kill left it: the header was valid, and stated at most 1 s (flush_seconds) less.
    folder = tmp_path / "killed"
    before = read_wav(folder / AUDIO_FILE, sample_format)
    assert written - rate <= before.size <= written + piece
    assert before.tobytes() == known_signal(0, before.size, sample_format).tobytes()
    lines = event_lines(folder)
    *whole, tail = lines
    parsed = [json.loads(line) for line in whole]
    assert [e["index"] for e in parsed] == list(range(len(parsed)))
    assert len(parsed) >= written // piece  # each printed piece's event was already on disk
    assert json.loads((folder / SESSION_FILE).read_text("utf-8"))["status"] == "live"

    report = repair(folder)
    assert report.marked_interrupted and report.events_dropped == (1 if tail else 0)
    size = (folder / AUDIO_FILE).stat().st_size
    layout = SAMPLE_FORMATS[sample_format]
    assert (size - layout.header_size) % layout.width == 0
    assert header_sizes(folder / AUDIO_FILE, sample_format) == (size - 8, size - layout.header_size)
    after = read_wav(folder / AUDIO_FILE, sample_format)
    assert report.samples == after.size >= before.size
    assert after.tobytes() == known_signal(0, after.size, sample_format).tobytes()
    assert all(json.loads(line) for line in event_lines(folder)[:-1])
    meta = json.loads((folder / SESSION_FILE).read_text("utf-8"))
    assert meta["status"] == "interrupted" and meta["duration_seconds"] == after.size / rate
    assert meta["context"] == "kill test" and "summary" not in meta
    started, ended = (datetime.fromisoformat(meta[k]) for k in ("started_at", "ended_at"))
    assert 1.5 < (ended - started).total_seconds() < 10

    files = digest(folder)
    again = repair(folder)
    assert not again.changed and again.samples == after.size and digest(folder) == files


def run_child(function: str, *args: str) -> str:
    """Run one of this file's child-process bodies to its end; returns its stdout."""
    done = subprocess.run(
        child_command(function, *args), cwd=REPO, capture_output=True, text=True, timeout=30,
        check=False,  # a failure is reported below with the child's stderr
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_failed_write_stops_the_recording_and_close_repairs_it(tmp_path):
    limit = 44 + 10001  # room for 5000 samples and half of the next
    out = run_child("record_until_full", str(tmp_path), "full", str(limit)).split("\n")
    assert out[0].startswith(f"failed {errno.EFBIG} ")
    assert "stopped after a write error" in out[1]
    folder = tmp_path / "full"
    audio = read_wav(folder / AUDIO_FILE, "int16")
    assert audio.tobytes() == known_signal(0, 5000, "int16").tobytes()
    meta = load_session(tmp_path, "full")
    assert meta["status"] == "interrupted" and meta["duration_seconds"] == 5000 / 8000
    assert meta["summary"] == {"pieces": 5} and "File too large" in meta["error"]
    assert meta["events"] == 5 and meta["audio_bytes"] == 44 + 10000
    assert not repair(folder).changed


def test_repair_cuts_torn_line_and_partial_sample(tmp_path):
    rec = SessionRecorder(tmp_path, "torn", 16000, "float32", {}, flush_seconds=0.05)
    rec.write_audio(known_signal(0, 1000, "float32"))  # past 800 samples: header says 1000
    rec.write_event({"type": "info"})
    rec.write_event({"type": "window", "index": 0})
    folder = tmp_path / "torn"
    assert header_sizes(folder / AUDIO_FILE, "float32") == (50 + 4000, 4000)
    # A crash as the OS saw it: more audio reached the file than the header had caught up
    # with, ending in half a sample, and the last event line was cut.
    with open(folder / AUDIO_FILE, "ab") as f:
        f.write(known_signal(1000, 1200, "float32").tobytes() + b"\x01\x02\x03")
    with open(folder / EVENTS_FILE, "ab") as f:
        f.write(b'{"type":"window","ind')

    report = repair(folder)
    assert (report.samples, report.header_fixed, report.audio_bytes_dropped) == (1200, True, 3)
    assert (report.events_dropped, report.events_terminated) == (1, False)
    assert report.marked_interrupted and not report.tmp_removed
    audio = read_wav(folder / AUDIO_FILE, "float32")
    assert audio.tobytes() == known_signal(0, 1200, "float32").tobytes()
    assert event_lines(folder) == ['{"type":"info"}', '{"type":"window","index":0}', ""]
    assert load_session(tmp_path, "torn")["events"] == 2
    assert not repair(folder).changed


def test_repair_keeps_a_whole_event_missing_its_newline(tmp_path):
    SessionRecorder(tmp_path, "nl", 8000, "int16", {})  # never closed: the process "died"
    folder = tmp_path / "nl"
    (folder / EVENTS_FILE).write_bytes(b'{"a":1}\n{"b":2}')
    (folder / (SESSION_FILE + ".tmp")).write_bytes(b'{"sess')  # died mid-rewrite
    report = repair(folder)
    assert report.events_terminated and report.events_dropped == 0 and report.tmp_removed
    assert not report.header_fixed and report.samples == 0
    assert event_lines(folder) == ['{"a":1}', '{"b":2}', ""]


def test_repair_rebuilds_a_header_cut_short_and_refuses_foreign_wavs(tmp_path):
    SessionRecorder(tmp_path, "short", 8000, "int16", {})
    folder = tmp_path / "short"
    (folder / AUDIO_FILE).write_bytes(b"RIFF\x00")
    report = repair(folder)
    assert report.header_fixed and report.samples == 0
    with wave.open(str(folder / AUDIO_FILE), "rb") as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 0)

    SessionRecorder(tmp_path, "foreign", 8000, "int16", {})
    with wave.open(str(tmp_path / "foreign" / AUDIO_FILE), "wb") as w:  # 16 kHz: not ours
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(bytes(100))
    with pytest.raises(AudioError, match="left untouched"):
        repair(tmp_path / "foreign")
    with pytest.raises(ValueError, match="not a session folder"):
        repair(tmp_path / "nowhere")


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["", "../x", "..", ".hidden", "a/b", "a\\b", "x" * 65, "é", "a b", "ok\n", None]
)
def test_invalid_session_ids_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid session id"):
        validate_session_id(bad)
    with pytest.raises(ValueError, match="invalid session id"):
        SessionRecorder(tmp_path / "root", bad, 16000, "int16", {})
    with pytest.raises(KeyError):
        load_session(tmp_path / "root", bad)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_valid_session_ids():
    for good in ("a", "x" * 64, "2026-11-25T10.30_call-7", "_", "-", "a..b"):
        assert validate_session_id(good) == good


def test_reused_id_wrong_dtype_and_bad_arguments(tmp_path):
    rec = SessionRecorder(tmp_path, "once", 16000, "int16", {})
    with pytest.raises(ConfigError, match="already used"):
        SessionRecorder(tmp_path, "once", 16000, "int16", {})
    with pytest.raises(AudioError, match="1-D int16 samples, got float32"):
        rec.write_audio(np.zeros(10, np.float32))
    with pytest.raises(AudioError, match="shape"):
        rec.write_audio(np.zeros((10, 2), np.int16))
    with pytest.raises(ValueError, match="not JSON compliant"):  # NaN
        rec.write_event({"score": float("nan")})
    with pytest.raises(TypeError, match="an event must be a mapping, got list"):
        rec.write_event([1, 2])
    with pytest.raises(TypeError, match="not JSON serializable"):
        rec.close({"array": np.zeros(2)})  # rejected before anything is closed...
    rec.write_audio(np.zeros(10, np.int16))  # ...so the recording goes on
    rec.close({})
    with pytest.raises(ValueError, match="closed"):
        rec.write_audio(np.zeros(10, np.int16))
    with pytest.raises(ValueError, match="closed"):
        rec.write_event({})
    f32 = SessionRecorder(tmp_path, "f32", 16000, "float32", {})
    with pytest.raises(AudioError, match="float32 samples, got int16"):
        f32.write_audio(np.zeros(10, np.int16))
    with pytest.raises(AudioError, match="got float64"):
        f32.write_audio(np.zeros(10))
    f32.close()

    with pytest.raises(ValueError, match="sample_format must be one of int16, float32"):
        SessionRecorder(tmp_path, "b1", 16000, "mulaw", {})
    with pytest.raises(ValueError, match="sample_rate"):
        SessionRecorder(tmp_path, "b2", 0, "int16", {})
    with pytest.raises(ValueError, match="flush_seconds"):
        SessionRecorder(tmp_path, "b3", 16000, "int16", {}, flush_seconds=-1)
    with pytest.raises(ValueError, match="status"):
        SessionRecorder(tmp_path, "b4", 16000, "int16", {"status": "hijacked"})
    with pytest.raises(TypeError):
        SessionRecorder(tmp_path, "b5", 16000, "int16", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f32", "once"]  # nothing half-made


# ---- listing ----------------------------------------------------------------------------------
def test_list_and_load_sessions(tmp_path):
    assert list_sessions(tmp_path / "missing") == []
    for sid in ("first", "second", "third"):
        rec = SessionRecorder(tmp_path, sid, 8000, "int16", {"context": sid}, fsync=sid == "second")
        rec.write_audio(np.zeros(800, np.int16))
        rec.write_event({"type": "info"})
        if sid != "third":
            rec.close({"n": 1})
    (tmp_path / "no-json").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / SESSION_FILE).write_text('{"session_id": "bro')
    (tmp_path / "a-file").write_text("not a session")

    sessions = list_sessions(tmp_path)
    assert [s["session_id"] for s in sessions] == ["third", "second", "first"]
    assert [s["status"] for s in sessions] == ["live", "complete", "complete"]

    second = load_session(tmp_path, "second")
    assert second["events"] == 1 and second["audio_bytes"] == 44 + 1600
    assert second["summary"] == {"n": 1} and second["context"] == "second"
    assert load_session(tmp_path, "third")["status"] == "live"
    for unknown in ("nope", "no-json", "broken", "../first", ""):
        with pytest.raises(KeyError):
            load_session(tmp_path, unknown)
