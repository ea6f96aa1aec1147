"""`emostream replay`: recorded sessions played back as live ones, for drills and for load.

Each recording (`recordings/<id>/`: session.json and events.jsonl) is sent to a running server's
`/ws/replay` (stream.protocol.replay): `replay_start` with the recording's session fields and
info events, then its events in recorded order, each sent when its stream time (a window's end,
a transition's confirmation) comes round at `--speed`, then `stop`. The server publishes them
through its real paths — catalog, monitor feed and alerts, MQTT, metrics — as a session marked
`replay: true` everywhere, without audio or a model, so supervisors rehearse on past calls and
the oversight path can be loaded with many calls on a small machine.

Many replays run at once on one event loop: every recording given (a session folder, or a
recordings folder: each session in it), or `--as-many N` of them, cycling through the recordings.
`--loop` starts each replay again when it ends, until interrupted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from models.errors import EmostreamError
from stream.protocol.closing import CloseCode
from stream.protocol.replay import MAX_EVENTS_PER_MESSAGE, REPLAYED_TYPES, SESSION_FIELDS
from stream.server.alerts import describe as raises_alert
from stream.server.recording import EVENTS_FILE, SESSION_FILE

REPLAY_PATH = "/ws/replay"
MAX_BATCH_EVENTS = min(200, MAX_EVENTS_PER_MESSAGE)  # events per `events` message
MAX_BATCH_CHARS = 256 << 10  # ... and at most this much JSON (the server's limit is 1 MiB by default)
STARTING_AT_ONCE = 16  # connections between connect and `ready`: well below the server's --max-unstarted
RETRIES = 8  # tries of a replay the server refused for now (1013: full, too many connections)
FINISH_SECONDS = 60.0  # longest wait for the summary after `stop`
DEFAULT_TICK = 0.5  # seconds between two `events` messages of one replay, at most: fewer, fuller messages


class ReplayError(EmostreamError):
    """A recording that cannot be replayed, or a server that refused a replay: one line, exit code 2."""

    code = "replay"


class Refused(ReplayError):
    """The server refused the handshake (401, 403, 421...): no replay can run; the command stops."""


@dataclass(frozen=True)
class Recording:
    """One recorded session, ready to send: its replay_start, its events as JSON texts and when to send each."""

    folder: Path
    session_id: str
    start: dict  # the replay_start message (without `echo`)
    texts: tuple[str, ...]  # each event body as recorded (one events.jsonl line)
    due: tuple[float, ...]  # each event's send time in stream seconds, never decreasing
    duration: float  # the recorded session's length in stream seconds
    alerts: int  # alerts its events raise


def emitted_at(body: dict) -> float:
    """When a live session published an event, in stream seconds: a window's or segment's end, a
    transition's confirmation, a review's or dual report's segment end."""
    value = body.get("confirmed_at") if body.get("type") == "transition" else body.get("end")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def load_recording(folder: Path) -> tuple[Recording, int]:
    """A session folder's recording and how many of its events are of types a replay cannot carry."""
    try:
        meta = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
        lines = (folder / EVENTS_FILE).read_text(encoding="utf-8").split("\n")
    except (OSError, ValueError) as exc:
        raise ReplayError(f"{folder}: not a readable recording ({exc})") from None
    if not isinstance(meta, dict) or not meta.get("session_id") or not meta.get("sample_rate"):
        raise ReplayError(f"{folder}: {SESSION_FILE} lacks session_id or sample_rate")
    infos, texts, due, skipped, alerts, latest = [], [], [], 0, 0, 0.0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError:
            if n >= len(lines) - 1:  # a torn last line (the server was killed): what `repair` drops
                break
            raise ReplayError(f"{folder / EVENTS_FILE}:{n}: not a JSON event") from None
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "info":
            infos.append(body)
        elif kind in REPLAYED_TYPES:
            texts.append(line.strip())
            latest = max(latest, emitted_at(body))
            due.append(latest)
            alerts += raises_alert(body) is not None
        else:
            skipped += 1
    session = {k: meta[k] for k in SESSION_FIELDS if meta.get(k) is not None}
    start = {"type": "replay_start", "session": session, "info": infos}
    duration = meta.get("duration_seconds")
    duration = float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else 0.0
    return Recording(folder, str(meta["session_id"]), start, tuple(texts), tuple(due), max(duration, latest),
                     alerts), skipped  # fmt: skip


def find_recordings(paths: list[Path], out=sys.stderr) -> list[Recording]:
    """The recordings named: session folders as given; in a recordings folder, each finished session
    that is not itself a replay (live ones are still being written)."""
    found = []
    for path in paths:
        if (path / SESSION_FILE).is_file():
            folders = [path]
        elif path.is_dir():
            folders = []
            for sub in sorted(p for p in path.iterdir() if (p / SESSION_FILE).is_file()):
                try:
                    meta = json.loads((sub / SESSION_FILE).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(meta, dict) and meta.get("status") != "live" and not meta.get("replay"):
                    folders.append(sub)
        else:
            raise ReplayError(f"{path}: neither a session folder (with {SESSION_FILE}) nor a recordings folder")
        for folder in folders:
            recording, skipped = load_recording(folder)
            if skipped:
                print(f"{folder}: {skipped} events of types a replay does not carry are left out", file=out)
            found.append(recording)
    if not found:
        raise ReplayError(f"no recordings to replay in {', '.join(map(str, paths))}")
    return found


def replay_url(url: str) -> str:
    """ws://host:port -> ws://host:port/ws/replay (a URL with a path is kept as given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ReplayError(f"the server URL must be ws:// or wss://, got {url!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=REPLAY_PATH)
    return urlunsplit(parts)


@dataclass
class Outcome:
    """What one replay did."""

    original: str
    session_id: str | None = None
    sent: int = 0  # events sent
    echoed: int = 0  # events the server sent back
    errors: list = field(default_factory=list)  # the server's `error` messages
    summary: dict | None = None
    close: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.summary is not None and not self.errors


class _TryAgain(Exception):
    """The server refused this replay for now (1013): wait and try again."""


async def replay_once(rec: Recording, url: str, token: str | None, speed: float, echo: bool,
                      starting: asyncio.Semaphore, tick: float = 0.0) -> Outcome:
    """Send one recording to `/ws/replay`, paced at `speed`, and collect what the server answers."""
    out = Outcome(rec.session_id)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    ready = asyncio.get_running_loop().create_future()
    began = time.monotonic()
    async with starting:
        try:
            # No permessage-deflate: recorded events are small JSON; inflating them costs the server more than it saves.
            ws = await connect(url, additional_headers=headers, max_size=None, open_timeout=30, compression=None)
        except InvalidStatus as exc:
            raise Refused(f"the server refused the connection to {url}: HTTP {exc.response.status_code}") from None
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:  # a busy or restarting server
            raise _TryAgain(f"cannot connect to {url}: {exc or type(exc).__name__}") from None

        async def read() -> None:
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "ready" and not ready.done():
                        out.session_id = message.get("session_id")
                        ready.set_result(True)
                    elif kind == "error":
                        out.errors.append(message)
                        if not ready.done():
                            ready.set_result(False)
                    elif kind == "summary":
                        out.summary = message.get("stats")
                    elif kind not in ("info", "ready"):
                        out.echoed += 1
            except ConnectionClosed:
                pass
            finally:
                rcvd = ws.protocol.close_rcvd
                out.close = rcvd.code if rcvd else None
                if not ready.done():
                    ready.set_result(False)

        reader = asyncio.create_task(read())
        try:
            await ws.send(json.dumps({**rec.start, "echo": echo}, ensure_ascii=False))
            opened = await asyncio.wait_for(ready, 60)
        except (ConnectionClosed, asyncio.TimeoutError):
            opened = False
        if not opened:
            await ws.close()
            await reader
            if out.close == CloseCode.TRY_AGAIN:
                raise _TryAgain(out.errors[-1]["message"] if out.errors else "server full")
            out.seconds = time.monotonic() - began
            return out  # refused (errors say why): a failed replay
    t0 = asyncio.get_running_loop().time()
    try:
        out.sent = await _send_events(ws, rec, speed, t0, tick)
        wait = t0 + rec.duration / speed - asyncio.get_running_loop().time()
        if wait > 0:  # the call went on after its last event: so does the replay
            await asyncio.sleep(wait)
        await ws.send('{"type": "stop"}')
        await asyncio.wait_for(asyncio.shield(reader), FINISH_SECONDS)
    except (ConnectionClosed, asyncio.TimeoutError):
        pass
    finally:
        await ws.close()
        await reader
    out.seconds = time.monotonic() - began
    return out


async def _send_events(ws, rec: Recording, speed: float, t0: float, tick: float = 0.0) -> int:
    """The recording's events in order, each batch sent when its first event is due (`t0`: stream time 0),
    at most one message every `tick` seconds (the events due meanwhile wait for it)."""
    loop = asyncio.get_running_loop()
    i, n = 0, len(rec.texts)
    next_send = t0
    while i < n:
        wait = max(t0 + rec.due[i] / speed, next_send) - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        now = (loop.time() - t0) * speed
        j, chars = i, 0
        while j < n and (j == i or (rec.due[j] <= now and j - i < MAX_BATCH_EVENTS
                                    and chars + len(rec.texts[j]) < MAX_BATCH_CHARS)):  # fmt: skip
            chars += len(rec.texts[j]) + 1
            j += 1
        await ws.send('{"type": "events", "events": [' + ",".join(rec.texts[i:j]) + "]}")
        behind = j < n and rec.due[j] <= now  # the message was full: the rest of what is due goes at once
        next_send = loop.time() + (0.0 if behind else tick)
        i = j
    return n


@dataclass
class Totals:
    """Every replay's outcome, for the closing line."""

    done: int = 0
    failed: int = 0
    events: int = 0
    alerts: int = 0


async def run_replays(recordings: list[Recording], url: str, *, token: str | None = None, speed: float = 1.0,
                      as_many: int | None = None, loop: bool = False, echo: bool = True, ramp: float = 0.0,
                      tick: float = DEFAULT_TICK, out=sys.stdout) -> Totals:
    """Replay the recordings, `as_many` at once (cycling through them; default: each once), until done
    (or, with `loop`, until cancelled)."""
    url = replay_url(url)
    count = as_many or len(recordings)
    starting = asyncio.Semaphore(STARTING_AT_ONCE)
    totals = Totals()

    async def worker(k: int, rec: Recording) -> None:
        await asyncio.sleep(ramp * k / count)
        while True:
            for attempt in range(RETRIES):
                try:
                    result = await replay_once(rec, url, token, speed, echo, starting, tick)
                    break
                except _TryAgain as exc:
                    if attempt == RETRIES - 1:  # a failed replay; the others go on
                        result = Outcome(rec.session_id, errors=[{"code": "unavailable", "message": str(exc)}])
                        break
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))
            if result.ok:
                totals.done += 1
                totals.events += result.sent
                totals.alerts += rec.alerts
            else:
                totals.failed += 1
            if out is not None:
                errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in result.errors[:3])
                state = "ok" if result.ok else f"FAILED (close {result.close}{': ' + errors if errors else ''})"
                print(f"{result.session_id} <- {rec.session_id}: {len(rec.texts)} events, {rec.alerts} alerts, "
                      f"{result.seconds:.1f} s: {state}", file=out, flush=True)  # fmt: skip
            if not loop:
                return

    await asyncio.gather(*(worker(k, recordings[k % len(recordings)]) for k in range(count)))
    return totals


def add_replay_options(p) -> None:
    """The options of `emostream replay`."""
    p.add_argument("recordings", nargs="+", type=Path,
                   help="session folders (recordings/<id>) or recordings folders (each finished, non-replay session)")
    p.add_argument("--server", required=True, metavar="ws://HOST:PORT", help="the server whose /ws/replay plays them")
    p.add_argument("--speed", type=float, default=1.0, help="stream seconds per second (1: real time; 20: a 10-minute "
                   "call in 30 s)")
    p.add_argument("--token", default=None, help="a credential with the stream right (Authorization: Bearer)")
    p.add_argument("--loop", action="store_true", help="start each replay again when it ends, until interrupted")
    p.add_argument("--as-many", type=int, default=None, metavar="N",
                   help="N replays at once, cycling through the recordings (load tests); default: each recording once")
    p.add_argument("--ramp", type=float, default=0.0, metavar="SECONDS", help="spread the starts over this long")
    p.add_argument("--tick", type=float, default=DEFAULT_TICK, metavar="SECONDS",
                   help="send each replay's due events at most this often, together (default %(default)s; 0: each "
                        "as it falls due). A live session publishes a scored chunk's windows together too")
    p.add_argument("--no-echo", action="store_true",
                   help="the server sends no events back (monitors, MQTT and recordings still get them): load tests")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per replay, only the totals")


def run(args) -> int:
    """`emostream replay`: 0 when every replay completed, 1 when some failed, 2 on a usage error."""
    if not args.speed > 0:
        raise ReplayError("--speed must be positive")
    if args.as_many is not None and args.as_many < 1:
        raise ReplayError("--as-many must be at least 1")
    if args.ramp < 0 or args.tick < 0:
        raise ReplayError("--ramp and --tick must be 0 or more")
    recordings = find_recordings(args.recordings)
    began = time.monotonic()
    try:
        totals = asyncio.run(run_replays(recordings, args.server, token=args.token, speed=args.speed,
                                         as_many=args.as_many, loop=args.loop, echo=not args.no_echo,
                                         ramp=args.ramp, tick=args.tick,
                                         out=None if args.quiet else sys.stdout))  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted: the replays still running end as disconnected", file=sys.stderr)
        return 130
    print(f"replayed {totals.done} session(s) ({totals.events} events, {totals.alerts} alerts) in "
          f"{time.monotonic() - began:.1f} s" + (f"; {totals.failed} FAILED" if totals.failed else ""))
    return 1 if totals.failed else 0


__all__ = ["Recording", "Refused", "ReplayError", "add_replay_options", "find_recordings", "load_recording", "replay_url",
           "run", "run_replays"]  # fmt: skip
