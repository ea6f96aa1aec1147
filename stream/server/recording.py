"""Durable session recordings: `<root>/<session_id>/` holds audio.wav, events.jsonl, session.json.

The files are written so that a process killed at any instant (SIGKILL included) leaves a WAV
that opens, an events log whose lines parse (save perhaps a torn last one) and a session.json
that says "live"; `repair` then makes the session whole and marks it "interrupted".
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.errors import AudioError, ConfigError
from stream.protocol.native import MAX_METADATA_DEPTH, SESSION_ID_RE, json_depth

AUDIO_FILE = "audio.wav"
PARTIES_KEY = "parties"  # session.json: the party names of a split session, one WAV each
EVENTS_FILE = "events.jsonl"
SESSION_FILE = "session.json"
_TMP_SUFFIX = ".tmp"

# Keys the recorder owns in session.json (and load_session adds); `info` may not shadow them.
RESERVED_KEYS = frozenset(
    {
        "session_id", "status", "started_at", "sample_rate", "sample_format", "ended_at",
        "duration_seconds", "summary", "error", "events", "audio_bytes", "audio_kept",
    }
)
_MAX_DATA_BYTES = 0xFFFFFFFF - 64  # RIFF sizes are 32-bit; the header must fit as well
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_IEEE_FLOAT = 3


@dataclass(frozen=True)
class WavLayout:
    """The exact header SessionRecorder writes for one sample format (mono, little-endian)."""

    sample_format: str  # "int16" or "float32"
    dtype: np.dtype  # how samples are stored in the data chunk
    format_tag: int  # WAVE_FORMAT_PCM or WAVE_FORMAT_IEEE_FLOAT

    @property
    def width(self) -> int:
        """Bytes per sample frame (mono: one sample)."""
        return self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        """Non-PCM formats need the extended fmt chunk and a fact chunk."""
        return self.format_tag != _WAVE_FORMAT_PCM

    @property
    def header_size(self) -> int:
        """Bytes before the first sample: 44 for PCM, 58 for IEEE float."""
        return 58 if self.is_float else 44

    def header(self, sample_rate: int, n_samples: int) -> bytes:
        """The complete header for `n_samples` samples, ready to write at offset 0."""
        data_bytes = n_samples * self.width
        fmt = struct.pack(
            "<HHIIHH", self.format_tag, 1, sample_rate, sample_rate * self.width, self.width,
            8 * self.width,
        )
        if self.is_float:
            # The WAV spec asks non-PCM files for cbSize and a fact chunk with the sample count.
            fmt_chunk = b"fmt " + struct.pack("<I", 18) + fmt + struct.pack("<H", 0)
            fmt_chunk += b"fact" + struct.pack("<II", 4, n_samples)
        else:
            fmt_chunk = b"fmt " + struct.pack("<I", 16) + fmt
        body = b"WAVE" + fmt_chunk + b"data" + struct.pack("<I", data_bytes)
        return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body

    def without_sizes(self, header: bytes) -> bytes:
        """`header` with its size fields zeroed: what must match for the file to be ours."""
        # RIFF size, data size and, for float, the fact chunk's sample count (see `header`).
        offsets = [4, self.header_size - 4] + ([46] if self.is_float else [])
        out = bytearray(header)
        for offset in offsets:
            out[offset : offset + 4] = bytes(4)
        return bytes(out)


SAMPLE_FORMATS: dict[str, WavLayout] = {
    # int16: pcm_s16le and decoded mu-law input; float32: pcm_f32le, kept bit-exact.
    "int16": WavLayout("int16", np.dtype("<i2"), _WAVE_FORMAT_PCM),
    "float32": WavLayout("float32", np.dtype("<f4"), _WAVE_FORMAT_IEEE_FLOAT),
}


def validate_session_id(session_id: str) -> str:
    """`session_id` if it is 1-64 of [A-Za-z0-9._-] not starting with '.'; else ValueError."""
    # Ids come from clients and become folder names: this is what keeps them inside the root.
    if not isinstance(session_id, str) or not SESSION_ID_RE.fullmatch(session_id):
        raise ValueError(
            f"invalid session id {session_id!r}: use 1-64 characters of A-Z a-z 0-9 . _ - "
            "not starting with '.'"
        )
    return session_id


def audio_file(party: str | None = None) -> str:
    """The WAV a session keeps its audio in: audio.wav, or audio-<party>.wav per party of a split one."""
    return AUDIO_FILE if party is None else f"audio-{party}.wav"


def audio_files(meta: Mapping) -> list[str]:
    """The WAV files of a recorded session, from its session.json."""
    parties = meta.get(PARTIES_KEY)
    if isinstance(parties, list) and parties and all(isinstance(p, str) and SESSION_ID_RE.fullmatch(p) for p in parties):
        return [audio_file(p) for p in parties]
    return [AUDIO_FILE]


class _Track:
    """One WAV being written (or, with `path` None for `--record events`, only counted): its samples."""

    def __init__(self, path: Path | None, header: bytes):
        # Held open for the session's life, so no `with`; "xb": never write over another's file.
        self.file = open(path, "xb", opener=_private) if path is not None else None  # noqa: SIM115
        try:
            if self.file is not None:
                self.file.write(header)
                self.file.flush()
        except BaseException:
            self.file.close()
            raise
        self.samples = 0
        self.unflushed = 0  # samples written since the header last described the file


def _iso(when: datetime) -> str:
    """ISO 8601 with fixed-width microseconds, so that the strings sort in time order."""
    return when.isoformat(timespec="microseconds")


def _now_iso() -> str:
    """The current UTC time as `_iso` writes it."""
    return _iso(datetime.now(timezone.utc))


def _json_bytes(data: Mapping, **kwargs) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON and would make the file unreadable elsewhere.
    return json.dumps(data, ensure_ascii=False, allow_nan=False, **kwargs).encode("utf-8")


def _private(path, flags):
    """`open` opener: files only their owner may read (recordings are calls' audio)."""
    return os.open(path, flags, 0o600)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, fsync: bool) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a mix."""
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    try:
        with open(tmp, "wb", opener=_private) as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        if not path.exists():
            raise
        # A full disk has no room for a second copy; the file's own blocks, freed by the
        # truncation, hold the new one (the same size give or take a line). Not atomic, but a
        # "live" status that never changes is worse: it leaks the session's state.
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    if fsync:
        _fsync_dir(path.parent)  # the rename itself must reach the disk too


def _read_session_json(path: Path) -> dict | None:
    """session.json's contents, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    # Sessions recorded before metadata depth was bounded: keep them listable (JSON encoders recurse).
    if json_depth(data.get("metadata"), MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        data["metadata"] = {"dropped": f"metadata nested deeper than {MAX_METADATA_DEPTH} levels"}
    return data


class SessionRecorder:
    """Records one live session's audio (WAV) and events (JSON lines); crashes lose little."""

    def __init__(
        self,
        root: str | Path,
        session_id: str,
        sample_rate: int,
        sample_format: str,
        info: Mapping[str, object],
        flush_seconds: float = 1.0,
        fsync: bool = False,
        keep_audio: bool = True,
    ):
        """Create `<root>/<session_id>/` with session.json ("live"), an empty WAV and events log.

        `keep_audio=False` (`--record events`) writes no audio.wav: samples are only counted.
        """
        validate_session_id(session_id)
        if sample_format not in SAMPLE_FORMATS:
            raise ValueError(
                f"sample_format must be one of {', '.join(SAMPLE_FORMATS)}, got {sample_format!r}"
            )
        if not isinstance(sample_rate, int) or not 0 < sample_rate <= 1_000_000:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        if not 0 <= flush_seconds < 86400:
            raise ValueError(f"flush_seconds must be in [0, 86400), got {flush_seconds!r}")
        clash = RESERVED_KEYS.intersection(info)
        if clash:
            keys = ", ".join(sorted(clash))
            raise ValueError(f"info may not set the recorder's own keys: {keys}")
        self.session_id = session_id
        self.sample_rate = sample_rate
        self.layout = SAMPLE_FORMATS[sample_format]
        self.fsync = fsync
        self.dir = Path(root) / session_id
        self._flush_every = max(1, round(flush_seconds * sample_rate))  # samples per header update
        self._meta = {
            "session_id": session_id,
            "status": "live",
            "started_at": _now_iso(),
            "sample_rate": sample_rate,
            "sample_format": sample_format,
            "audio_kept": keep_audio,
            **info,
        }
        meta_bytes = _json_bytes(self._meta, indent=2)  # fails on bad info before any file exists
        parties = info.get(PARTIES_KEY) or [None]
        self._closed = False
        self._failed: OSError | None = None  # a write that failed (disk full...) stops recording

        self.dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.dir.mkdir(mode=0o700)  # atomic: of two recorders racing for one id, exactly one wins
        except FileExistsError:
            raise ConfigError(
                f"session id {session_id!r} is already used in {self.dir.parent} "
                "(ids are never reused)"
            ) from None
        # session.json first: every folder a recorder started says what its audio format is,
        # which is what lets `repair` rebuild whatever else a crash left half-made.
        _write_atomic(self.dir / SESSION_FILE, meta_bytes, fsync)
        # A split session keeps each party's audio in its own mono WAV: the tracks of a call
        # arrive apart and need not line up, and each file replays as that party alone.
        self._tracks: dict[str | None, _Track] = {}
        try:
            for party in parties:
                path = self.dir / audio_file(party) if keep_audio else None
                self._tracks[party] = _Track(path, self.layout.header(sample_rate, 0))
            self._events = open(self.dir / EVENTS_FILE, "xb", opener=_private)  # noqa: SIM115
        except BaseException:
            for track in self._tracks.values():
                if track.file is not None:
                    track.file.close()
            raise
        if fsync:
            self._sync()
            _fsync_dir(self.dir)

    @property
    def samples_written(self) -> int:
        """Audio samples written so far (the longest party's)."""
        return max(track.samples for track in self._tracks.values())

    @property
    def seconds_written(self) -> float:
        """Seconds of audio written so far."""
        return self.samples_written / self.sample_rate

    @property
    def closed(self) -> bool:
        """True once `close` has run."""
        return self._closed

    @property
    def meta(self) -> dict:
        """What session.json holds now: "live" at first, the final status and summary once closed."""
        return dict(self._meta)

    def write_audio(self, samples: np.ndarray, party: str | None = None) -> None:
        """Append mono samples (int16 or float32, matching `sample_format`) to audio.wav (or the party's WAV)."""
        self._check_open()
        if party not in self._tracks:
            raise ValueError(f"recording {self.session_id!r} has no party {party!r}")
        track = self._tracks[party]
        a = np.asarray(samples)
        if a.dtype != np.dtype(self.layout.sample_format) or a.ndim != 1:
            raise AudioError(
                f"recording {self.session_id!r} takes 1-D {self.layout.sample_format} samples, "
                f"got {a.dtype} with shape {a.shape}"
            )
        if a.size == 0:
            return
        if (track.samples + a.size) * self.layout.width > _MAX_DATA_BYTES:
            raise AudioError(
                f"recording {self.session_id!r} is full: a WAV file holds at most 4 GiB "
                f"({self.seconds_written:.0f} s recorded)"
            )
        if track.file is None:  # events only: the audio is analyzed, never kept
            track.samples += a.size
            return
        try:
            track.file.write(a.astype(self.layout.dtype, copy=False).tobytes())
            track.samples += a.size
            track.unflushed += a.size
            if track.unflushed >= self._flush_every:
                self._checkpoint()
        except OSError as exc:
            self._fail(exc)
            raise

    def count_samples(self, samples: int, party: str | None = None) -> None:
        """Count samples analyzed elsewhere into an events-only recording (a replay's stream time): no audio."""
        self._check_open()
        track = self._tracks.get(party)
        if track is None or track.file is not None:
            raise ValueError(f"recording {self.session_id!r} keeps no audio-less track {party!r}")
        track.samples += max(0, int(samples))

    def write_event(self, event: Mapping[str, object]) -> None:
        """Append one event to events.jsonl as a compact JSON line, flushed to the OS at once."""
        self._check_open()
        if not isinstance(event, Mapping):
            raise TypeError(f"an event must be a mapping, got {type(event).__name__}")
        line = _json_bytes(event, separators=(",", ":")) + b"\n"
        # The buffer is empty before this (every event is flushed), so the line reaches the OS
        # in one write: a kill cannot cut it, and readers never see half an event.
        try:
            self._events.write(line)
            self._events.flush()
        except OSError as exc:
            self._fail(exc)
            raise

    def close(self, summary: Mapping[str, object] | None = None, status: str = "complete") -> None:
        """Finish the WAV, close the files and mark session.json with `status` and `summary`.

        `status` is "complete" for a normal stop, else why the session ended ("disconnected",
        "overload", "server_shutdown", ...).
        """
        if self._closed:
            return
        if self._failed is not None:
            self._close_failed(summary)
            return
        meta = {
            **self._meta,
            "status": status,
            "ended_at": _now_iso(),
            "duration_seconds": self.seconds_written,
            "summary": dict(summary or {}),
        }
        # Serialise first: a summary that is not JSON raises here and leaves the recorder open.
        meta_bytes = _json_bytes(meta, indent=2)
        try:
            self._checkpoint()
        except OSError as exc:  # the disk filled up since the last write: close as a failed recording
            self._fail(exc)
            self._close_failed(summary)
            return
        self._closed = True
        self._release()
        _write_atomic(self.dir / SESSION_FILE, meta_bytes, self.fsync)
        self._meta = meta

    def _check_open(self) -> None:
        if self._failed is not None:
            raise ValueError(
                f"recording {self.session_id!r} stopped after a write error: {self._failed}"
            )
        if self._closed:
            raise ValueError(f"recording {self.session_id!r} is closed")

    def _fail(self, exc: OSError) -> None:
        """Stop after a failed write: appending to a partial sample or line garbles the rest."""
        self._failed = exc
        for f in self._files():
            try:
                f.close()
            except OSError:
                pass  # its unwritten buffer is lost either way; repair makes the files whole

    def _close_failed(self, summary: Mapping[str, object] | None) -> None:
        """Close after a failed write: repair what reached the disk, then keep the summary."""
        self._closed = True
        try:
            repair(self.dir)  # status becomes "interrupted": the recording is known to be cut short
        except (OSError, ValueError):
            pass  # still no room: the next server start repairs it (the status says "live")
        meta = _read_session_json(self.dir / SESSION_FILE) or dict(self._meta)
        meta.update(summary=dict(summary or {}), error=str(self._failed))
        if meta.get("status") == "live":
            meta.update(status="interrupted", ended_at=_now_iso(), duration_seconds=self.seconds_written)
        try:
            _write_atomic(self.dir / SESSION_FILE, _json_bytes(meta, indent=2), self.fsync)
        except OSError:
            pass  # as above: a restart's repair marks it
        self._meta = meta

    def _checkpoint(self) -> None:
        """Hand buffered audio to the OS, then make the header describe it."""
        # Data first, header second: a kill between the two leaves a header that claims less
        # than the file holds, which is still a valid WAV.
        for track in self._tracks.values():
            if track.file is None:
                continue
            track.file.flush()
            track.file.seek(0)
            track.file.write(self.layout.header(self.sample_rate, track.samples))
            track.file.seek(0, os.SEEK_END)
            track.file.flush()
            track.unflushed = 0
        self._events.flush()
        if self.fsync:
            self._sync()

    def _sync(self) -> None:
        for f in self._files():
            os.fsync(f.fileno())

    def _release(self) -> None:
        for f in self._files():
            f.close()

    def _files(self) -> list:
        tracks = [track.file for track in self._tracks.values() if track.file is not None]
        return tracks + [self._events]


@dataclass(frozen=True)
class RepairReport:
    """What `repair` changed in one session folder; nothing changed means it was already whole."""

    session_dir: Path
    samples: int  # audio samples in audio.wav after repair (a split session's: the longest party's)
    header_fixed: bool  # the WAV header's sizes were rewritten (or a missing header written)
    audio_bytes_dropped: int  # a partial trailing sample frame cut off
    events_dropped: int  # torn last lines of events.jsonl removed (0 or 1)
    events_terminated: bool  # a complete last event lacked its newline; one was added
    marked_interrupted: bool  # session.json said "live" and now says "interrupted"
    tmp_removed: bool  # a leftover session.json.tmp from an interrupted rewrite was deleted

    @property
    def changed(self) -> bool:
        """True if any file was modified."""
        return bool(
            self.header_fixed or self.audio_bytes_dropped or self.events_dropped
            or self.events_terminated or self.marked_interrupted or self.tmp_removed
        )


def repair(session_dir: str | Path) -> RepairReport:
    """Make a session whose process died whole again; changes nothing in a sound session."""
    # Only for sessions whose writer is gone: repairing a session still being recorded races it.
    session_dir = Path(session_dir)
    meta_path = session_dir / SESSION_FILE
    meta = _read_session_json(meta_path)
    if meta is None:
        raise ValueError(f"{session_dir}: not a session folder (no readable {SESSION_FILE})")
    layout = SAMPLE_FORMATS.get(meta.get("sample_format"))
    rate = meta.get("sample_rate")
    if layout is None or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{meta_path}: bad sample_format or sample_rate")
    audios, events = [session_dir / name for name in audio_files(meta)], session_dir / EVENTS_FILE
    # The last write to any file is the best record of when the session died.
    mtimes = [p.stat().st_mtime for p in (*audios, events, meta_path) if p.exists()]

    if meta.get("audio_kept", True):
        repaired = [_repair_wav(audio, layout, rate) for audio in audios]
        samples = max(r[0] for r in repaired)
        header_fixed = any(r[1] for r in repaired)
        dropped = sum(r[2] for r in repaired)
    else:  # --record events: no audio file; the duration is what the last checkpoint said
        samples, header_fixed, dropped = round(float(meta.get("duration_seconds") or 0) * rate), False, 0
    events_dropped, terminated = _repair_events(events)

    tmp = meta_path.with_name(meta_path.name + _TMP_SUFFIX)
    tmp_removed = tmp.exists()  # looked at first: the rewrite below passes through this name
    if tmp_removed:
        tmp.unlink()
    marked = meta.get("status") == "live"
    if marked:
        meta.update(
            status="interrupted",
            ended_at=_iso(datetime.fromtimestamp(max(mtimes), timezone.utc)),
            duration_seconds=samples / rate,
        )
        _write_atomic(meta_path, _json_bytes(meta, indent=2), fsync=True)
    return RepairReport(
        session_dir, samples, header_fixed, dropped, events_dropped, terminated, marked, tmp_removed
    )


def _repair_wav(path: Path, layout: WavLayout, rate: int) -> tuple[int, bool, int]:
    """Fit audio.wav's header to its length; returns (samples, header rewritten, bytes cut)."""
    size = path.stat().st_size if path.exists() else 0
    if size < layout.header_size:
        # The header is the recorder's first write; a shorter file died while being created.
        with open(path, "wb") as f:
            f.write(layout.header(rate, 0))
        return 0, True, 0
    with open(path, "r+b") as f:
        header = f.read(layout.header_size)
        data_bytes = size - layout.header_size
        samples = data_bytes // layout.width
        expected = layout.header(rate, samples)
        if layout.without_sizes(header) != layout.without_sizes(expected):
            raise AudioError(
                f"{path}: not the {layout.sample_format} {rate} Hz WAV header this session "
                "writes; left untouched"
            )
        dropped = data_bytes - samples * layout.width
        if dropped:
            f.truncate(size - dropped)
        fixed = header != expected
        if fixed:
            f.seek(0)
            f.write(expected)
        if dropped or fixed:
            f.flush()
            os.fsync(f.fileno())
    return samples, fixed, dropped


def _repair_events(path: Path) -> tuple[int, bool]:
    """Remove a torn last line of events.jsonl; returns (lines dropped, newline added)."""
    if not path.exists():
        path.touch()
        return 0, False
    with open(path, "r+b") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1  # every complete line ends in "\n"; the tail after it is torn
        tail = data[end:]
        if not tail:
            return 0, False
        try:
            json.loads(tail)
            whole = True
        except ValueError:
            whole = False
        if whole:
            f.write(b"\n")  # the event is all there; only the newline was lost
        else:
            f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
    return (0, True) if whole else (1, False)


def list_sessions(root: str | Path) -> list[dict]:
    """session.json of every session under `root`, newest first; unreadable folders are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    sessions = []
    for entry in root.iterdir():
        if not SESSION_ID_RE.fullmatch(entry.name) or not entry.is_dir():
            continue
        meta = _read_session_json(entry / SESSION_FILE)
        if meta is not None:
            sessions.append(meta)
    sessions.sort(key=lambda m: (str(m.get("started_at") or ""), str(m.get("session_id"))))
    sessions.reverse()
    return sessions


def load_session(root: str | Path, session_id: str) -> dict:
    """session.json plus `events` (complete lines in events.jsonl) and `audio_bytes` (WAV size)."""
    try:
        validate_session_id(session_id)
    except ValueError:
        raise KeyError(session_id) from None
    folder = Path(root) / session_id
    meta = _read_session_json(folder / SESSION_FILE)
    if meta is None:
        raise KeyError(session_id)
    meta["events"] = _count_lines(folder / EVENTS_FILE)
    audios = [folder / name for name in audio_files(meta)]
    meta["audio_bytes"] = sum(audio.stat().st_size for audio in audios if audio.exists())
    return meta


def _count_lines(path: Path) -> int:
    # Count b"\n" in bytes: str.splitlines would also split on U+2028 inside JSON strings.
    if not path.exists():
        return 0
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


__all__ = [
    "AUDIO_FILE",
    "EVENTS_FILE",
    "PARTIES_KEY",
    "RESERVED_KEYS",
    "SAMPLE_FORMATS",
    "SESSION_FILE",
    "RepairReport",
    "SessionRecorder",
    "WavLayout",
    "audio_file",
    "audio_files",
    "list_sessions",
    "load_session",
    "repair",
    "validate_session_id",
]
