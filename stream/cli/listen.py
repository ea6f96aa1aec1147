"""`emostream listen`: analyze the microphone live, in the terminal.

The PortAudio callback only copies each 0.1 s block into an asyncio queue; the analysis (the
same `StreamAnalyzer` as everywhere else, or a running server's `/ws/stream` with `--server`)
happens in the event loop's executor, never in the audio thread. `sounddevice` is imported
inside the functions that need it, so the CLI imports on machines without PortAudio.

Output: a compact live view redrawn in place (rich when it is importable, plain ANSI escapes
otherwise), or with `--plain` one JSON line per event on stdout (notices go to stderr).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
import time
from collections import deque
from typing import Callable

import numpy as np

from models.errors import EmostreamError
from models.labels import with_emoji
from stream.client import Client, ClientError, ServerError, stream_url
from stream.engine.analyzer import StreamAnalyzer
from stream.engine.config import AnalyzerConfig
from stream.engine.events import to_dict
from stream.engine.parties import PartyError, parties_for, tagged
from vad import INPUT_RATES

from .options import analyzer_config, decision_data, load_scorer_from_args

BLOCK_SECONDS = 0.1  # one PortAudio block
STALL_SECONDS = 5.0  # no audio at all for this long: the input device is stuck
NOT_A_DIAGNOSIS = "decision support, not a diagnosis"
ALERT_TYPES = ("review", "dual_emotion")


def evidence(message: dict) -> str:
    """A review's or dual report's acoustic evidence, appended in words (never a score)."""
    return f" — {message['evidence']}" if message.get("evidence") else ""


class ListenError(EmostreamError):
    """A problem the user must fix (device, PortAudio, server): one line, exit code 2."""

    code = "listen"


# ---- options ---------------------------------------------------------------------------------
def add_listen_options(p) -> None:
    """The options of `emostream listen` (the model and analysis options are added by the CLI)."""
    g = p.add_argument_group("listen")
    g.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    g.add_argument("--input-device", default=None, metavar="NAME_OR_INDEX",
                   help="input device: index or (part of) a name from --list-devices (default: the system default)")
    g.add_argument("--sample-rate", type=int, choices=INPUT_RATES, default=AnalyzerConfig.sample_rate,
                   help="capture rate in Hz (default 16000; resampled to 16 kHz for the model)")
    g.add_argument("--seconds", type=float, default=None, metavar="N",
                   help="stop after N seconds of captured audio (default: until Ctrl-C)")
    g.add_argument("--server", default=None, metavar="ws://HOST:PORT",
                   help="send the audio to a running emostream server's /ws/stream instead of analyzing here")
    g.add_argument("--token", default=None, help="access token of --server (Authorization: Bearer)")
    g.add_argument("--context", default=None, help="domain context text; selects a profile (e.g. 'crisis hotline')")
    g.add_argument("--jsonl", default=None, metavar="FILE", help="also write every event to FILE as JSON lines")
    g.add_argument("--plain", action="store_true",
                   help="one JSON line per event instead of the live view (for logs and scripts)")
    g.add_argument("--split-channels", action="store_true",
                   help="record two channels (a stereo device: caller and agent) and analyze each as its own party")
    g.add_argument("--parties", type=lambda s: [n.strip() for n in s.split(",")], default=None, metavar="A,B",
                   help="with --split-channels: the channels' party names (default caller,agent)")


DEFAULT_PARTIES = ("caller", "agent")  # a stereo headset or call recorder: left, right


def listen_parties(args) -> tuple[str, ...]:
    """The parties `listen` analyzes: () for one mixed signal, else one name per captured channel."""
    if not args.split_channels:
        if args.parties:
            raise ListenError("--parties names the channels of --split-channels; add --split-channels")
        return ()
    try:
        return parties_for(args.parties or DEFAULT_PARTIES, 2, "--parties")  # a stereo device: two channels
    except PartyError as exc:
        raise ListenError(str(exc)) from None


# ---- sounddevice -----------------------------------------------------------------------------
def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise ListenError(f"PortAudio is not available ({exc}); install it (Debian: libportaudio2)") from None
    except ImportError:
        raise ListenError("the sounddevice package is not installed (pip install sounddevice)") from None
    return sounddevice


def input_devices() -> list[dict]:
    """PortAudio's input devices: index, name, channels, default rate, whether it is the default."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise ListenError(f"cannot list audio devices: {exc}") from None
    if default_in is None or default_in < 0:
        try:
            default_in = sd.query_devices(kind="input")["index"]
        except (sd.PortAudioError, ValueError):
            default_in = -1
    return [
        {"index": d["index"], "name": d["name"], "channels": d["max_input_channels"],
         "default_samplerate": d["default_samplerate"], "default": d["index"] == default_in}
        for d in devices if d["max_input_channels"] > 0
    ]


def list_devices(out=sys.stdout) -> None:
    """Print the input devices, the default one marked with `*`."""
    devices = input_devices()
    if not devices:
        print("no audio input devices found", file=out)
        return
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} in, {d['default_samplerate']:.0f} Hz)", file=out)
    print("* = default input", file=out)


def resolve_device(spec: str | None, channels: int = 1):
    """`--input-device` as PortAudio wants it (an index, a name, or None for the default); checked,
    with at least `channels` input channels."""
    sd = _sounddevice()
    device = int(spec) if spec is not None and spec.strip().lstrip("-").isdigit() else spec
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        what = "the default input device" if spec is None else f"input device {spec!r}"
        raise ListenError(f"{what} is not available ({exc}); see --list-devices") from None
    if info["max_input_channels"] < channels:
        raise ListenError(
            f"input device {info['name']!r} records {info['max_input_channels']} channel(s); --split-channels needs "
            f"{channels}: pick a stereo input (see --list-devices)"
        )
    return device, info["name"]


# ---- output ----------------------------------------------------------------------------------
def _bar(x: float, width: int = 20) -> str:
    """A score in [0, 1] as a bar of eighth blocks."""
    eighths = max(0, min(width * 8, round(x * width * 8)))
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


class LiveState:
    """What the live view shows, updated message by message; `lines()` renders it."""

    def __init__(self, source: str):
        self.emoji = with_emoji
        self.source = source
        self.seconds = 0.0
        self.notices: list[tuple[str, str]] = []  # (text, style) under the header
        self.window: dict | None = None
        self.windows: dict[str, dict] = {}  # a split stream: each party's latest window
        self.in_speech = False
        self.segments: deque[str] = deque(maxlen=5)
        self.alerts: deque[tuple[str, str]] = deque(maxlen=6)
        self.overflows = 0

    def update(self, m: dict) -> None:
        t = m.get("type")
        party = m.get("party")
        if party and t in ("window", "segment", "transition", "review", "dual_emotion"):
            if t == "window":
                self.windows[party] = m
            self._update_one(m, f"[{party}] ")
            return
        if t == "info" and party and any(n[0].startswith("model:") for n in self.notices):
            return  # one notice for the model, not one per party
        self._update_one(m, "")

    def _update_one(self, m: dict, who: str) -> None:
        t = m.get("type")
        if t == "info":
            model = m.get("model_id", "?")
            self.notices.append((f"model: {model}", "dim"))
            if m.get("random_weights"):
                self.notices.append(("⚠ " + (m.get("warning") or "RANDOM WEIGHTS: these scores are not emotion recognition"), "warn"))
        elif t == "window":
            self.window, self.in_speech = m, True
        elif t == "segment":
            self.in_speech = False
            self.segments.append(
                f"{who}#{m['index']:<3d}{m['start']:7.2f}–{m['end']:7.2f} s  {self.emoji(m['emotion'])} {m['confidence']:.0%}"
                f"  ({m['n_windows']} windows)"
            )
            withheld = (m.get("decision") or {}).get("withheld")
            if withheld:  # the quality gate refused a fear/disgust call: a person should listen
                self.alerts.append((f"{who}{m['start']:7.2f} s  ⚑ WITHHELD segment {m['index']}: {withheld}", "alert"))
        elif t == "transition":
            flagged = m.get("flagged")
            text = f"{who}{m['time']:7.2f} s  transition {self.emoji(m['from'])} → {self.emoji(m['to'])}"
            self.alerts.append((text + ("  ⚑ FLAGGED" if flagged else ""), "alert" if flagged else "plain"))
        elif t == "review":
            self.alerts.append((f"{who}{m['start']:7.2f} s  ⚑ REVIEW segment {m['segment']}: {m['leading']} vs "
                                f"{m['runner_up']} (gap {m['gap']:.2f}){evidence(m)}", "alert"))
        elif t == "dual_emotion":
            a, b = m["emotions"][:2]
            self.alerts.append((f"{who}{m['start']:7.2f} s  ⚑ DUAL EMOTION segment {m['segment']}: {a} + {b} "
                                f"(gap {m['gap']:.2f}){evidence(m)}", "alert"))
        elif t == "ready":
            self.notices.append((f"server session {m.get('session_id')}", "dim"))
        elif t == "overload":
            self.alerts.append(("server overloaded: " + str(m.get("message", "")), "warn"))
        elif t == "error":
            self.alerts.append((f"server error {m.get('code')}: {m.get('message')}", "warn"))
        elif t == "summary":
            self.notices.append((f"summary: {json.dumps(m.get('stats', {}))}", "dim"))

    def lines(self) -> list[tuple[str, str]]:
        out = [(f"emostream listen — {self.source} — {self.seconds:6.1f} s captured", "head")]
        out += self.notices
        if self.overflows:
            out.append((f"input overflow ×{self.overflows}: audio was dropped (the machine is too slow)", "warn"))
        w = self.window
        if self.windows:  # a split stream: one "now" per party, no score bars
            for party, pw in self.windows.items():
                out.append((f"now [{party}]: {self.emoji(pw['dominant'])} {pw['dominant_score']:.0%} (smoothed)   "
                            f"[last window {pw['start']:.1f}–{pw['end']:.1f} s]", "now"))
        elif w is None:
            out.append(("now: waiting for speech…", "plain"))
        else:
            state = "speaking" if self.in_speech else "silence"
            out.append((f"now: {self.emoji(w['dominant'])} {w['dominant_score']:.0%} (smoothed)   "
                        f"[{state}, last window {w['start']:.1f}–{w['end']:.1f} s]", "now"))
            for label, score in w["scores"].items():
                out.append((f"  {label:<10} {_bar(score)} {score:5.1%}", "plain"))
        out.append(("segments:" if self.segments else "segments: none yet", "dim"))
        out += [("  " + s, "plain") for s in self.segments]
        if self.alerts:
            out.append(("alerts:", "dim"))
            out += [("  " + a, style) for a, style in self.alerts]
        out.append((f"{NOT_A_DIAGNOSIS} — Ctrl-C to stop", "dim"))
        return out


_ANSI = {"head": "\033[1m", "warn": "\033[1;33m", "alert": "\033[1;31m", "now": "\033[1;36m", "dim": "\033[2m", "plain": ""}
_RICH = {"head": "bold", "warn": "bold yellow", "alert": "bold red", "now": "bold cyan", "dim": "dim", "plain": ""}


class LiveView:
    """The in-place view: rich's Live when rich is importable, else ANSI cursor movement."""

    def __init__(self, source: str, out=None):
        self.out = out or sys.stdout
        self.state = LiveState(source)
        self._shown = 0
        self._last = 0.0
        self._live = None
        try:  # rich only for this view (never for --plain); without it, ANSI cursor movement
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.out), auto_refresh=False, transient=False)
            self._live.start()
        except ImportError:
            self._live = None

    def show(self, message: dict) -> None:
        self.state.update(message)
        self.refresh(force=message.get("type") != "window")

    def progress(self, seconds: float, overflows: int) -> None:
        self.state.seconds, self.state.overflows = seconds, overflows
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        lines = self.state.lines()
        if self._live is not None:
            from rich.text import Text  # rich is there: __init__ started its Live

            text = Text()
            for i, (line, style) in enumerate(lines):
                text.append(line + ("\n" if i < len(lines) - 1 else ""), style=_RICH[style] or None)
            self._live.update(text, refresh=True)
        elif self.out.isatty():
            buf = f"\033[{self._shown}F" if self._shown else ""
            buf += "".join(f"\033[2K{_ANSI[s]}{line}\033[0m\n" for line, s in lines)
            self.out.write(buf)
            self.out.flush()
            self._shown = len(lines)

    def notice(self, text: str) -> None:
        self.state.notices.append((text, "dim"))
        self.refresh(force=True)

    def close(self) -> None:
        self.refresh(force=True)
        if self._live is not None:
            self._live.stop()
        elif not self.out.isatty():  # not a terminal: print the final view once
            for line, _ in self.state.lines():
                print(line, file=self.out)


class PlainView:
    """`--plain`: one JSON line per event on stdout; notices on stderr."""

    def __init__(self, source: str, out=None, err=None):
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self._overflows = 0

    def show(self, message: dict) -> None:
        print(json.dumps(message, ensure_ascii=False), file=self.out, flush=True)
        if message.get("type") == "info" and message.get("random_weights"):
            self.notice(message.get("warning") or "RANDOM WEIGHTS: these scores are not emotion recognition")

    def progress(self, seconds: float, overflows: int) -> None:
        if overflows > self._overflows:
            self._overflows = overflows
            self.notice(f"input overflow ×{overflows}: audio was dropped")

    def notice(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def close(self) -> None:
        pass


class Output:
    """The view plus the optional `--jsonl` file."""

    def __init__(self, view, jsonl: str | None):
        self.view = view
        self._file = open(jsonl, "w", encoding="utf-8") if jsonl else None

    def __call__(self, message: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(message, ensure_ascii=False) + "\n")
            self._file.flush()
        self.view.show(message)

    def close(self) -> None:
        self.view.close()
        if self._file is not None:
            self._file.close()


# ---- engines: where the audio goes -----------------------------------------------------------
class LocalEngine:
    """The in-process StreamAnalyzer; analysis runs in a worker thread, not in the event loop.

    With several `parties`, one analyzer per party, each fed its own column of (n, parties) blocks.
    """

    def __init__(self, analyzer, emit: Callable[[dict], None], parties: tuple[str, ...] = (), make=None):
        self.analyzers = {party: make() for party in parties} if parties else {None: analyzer}
        self.emit = emit

    async def start(self) -> None:
        pass  # the analyzer's `info` event comes with the first feed

    def _run(self, step) -> list[tuple[str | None, list]]:
        return [(party, step(party, analyzer)) for party, analyzer in self.analyzers.items()]

    def _emit(self, results) -> None:
        for party, events in results:
            for event in events:
                self.emit(tagged(to_dict(event), party))

    async def feed(self, block: np.ndarray) -> None:
        columns = list(self.analyzers)
        step = lambda party, a: a.feed(block if party is None else block[:, columns.index(party)])
        self._emit(await asyncio.get_running_loop().run_in_executor(None, self._run, step))

    async def finish(self) -> None:
        self._emit(await asyncio.get_running_loop().run_in_executor(None, self._run, lambda party, a: a.flush()))


def server_url(url: str) -> str:
    """ws://host:port -> ws://host:port/ws/stream (a URL with a path is kept as given)."""
    try:
        return stream_url(url)
    except ClientError:
        raise ListenError(f"--server must be a ws:// or wss:// URL, got {url!r}") from None


class ServerEngine:
    """`--server`: the audio goes to a running server through `stream.client.Client`; its messages are emitted."""

    def __init__(
        self, url: str, token: str | None, sample_rate: int, emit: Callable[[dict], None], context: str | None = None,
        parties: tuple[str, ...] = (),
    ):
        # A split stream: (n, parties) int16 blocks, sent interleaved.
        self.client = Client(server_url(url), token=token, sample_rate=sample_rate, encoding="pcm_s16le",
                             channels=max(1, len(parties)), split_channels=bool(parties), parties=parties,
                             context=context, metadata={"source": "emostream listen"})
        self.emit = emit
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        await self.client.open()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        """Emit every message; an `error` is shown and the session goes on; an abnormal close raises."""
        while True:
            try:
                async for message in self.client.messages():
                    self.emit(message)
                return
            except ServerError as exc:
                self.emit(exc.to_dict())

    async def feed(self, block: np.ndarray) -> None:
        if self._reader.done():
            raise self.client.closed_error()
        await self.client.send(block)

    async def finish(self) -> None:
        if self._reader is None:
            return
        try:
            await self.client.stop()
            await asyncio.wait_for(asyncio.shield(self._reader), 60)  # final events, summary, close 1000
        except asyncio.TimeoutError:
            raise ListenError("the server sent no summary within 60 s of stop") from None
        finally:
            await self.client.close()


# ---- capture loop ----------------------------------------------------------------------------
async def capture(args, device, engine, view, name: str | None = None, channels: int = 1) -> None:
    """Record until --seconds, Ctrl-C (SIGINT) or SIGTERM; feed every block to the engine; finish.

    One channel gives mono blocks; more (--split-channels) give (n, channels) blocks.
    """
    sd = _sounddevice()
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue = asyncio.Queue()
    stop = asyncio.Event()
    overflows = [0]

    def callback(indata, frames, time_info, status):  # PortAudio's thread: copy and hand over only
        if status.input_overflow:
            overflows[0] += 1
        loop.call_soon_threadsafe(blocks.put_nowait, indata[:, 0].copy() if channels == 1 else indata.copy())

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
            pass
    rate = args.sample_rate
    limit = None if args.seconds is None else round(args.seconds * rate)
    captured = 0
    await engine.start()
    try:
        try:
            stream = sd.InputStream(samplerate=rate, blocksize=round(rate * BLOCK_SECONDS), device=device,
                                    channels=channels, dtype="int16", callback=callback)
        except (sd.PortAudioError, ValueError) as exc:
            raise ListenError(f"cannot open the input device at {rate} Hz: {exc}") from None
        with stream:
            split = f", {channels} channels split" if channels > 1 else ""
            view.notice(f"listening on {name or stream_name(device)} at {rate} Hz{split}")
            last_audio = time.monotonic()
            while not stop.is_set() and (limit is None or captured < limit):
                try:
                    block = await asyncio.wait_for(blocks.get(), 0.25)
                except asyncio.TimeoutError:
                    if time.monotonic() - last_audio > STALL_SECONDS:
                        raise ListenError(f"no audio from the input device for {STALL_SECONDS:.0f} s") from None
                    continue
                last_audio = time.monotonic()
                block = block if limit is None else block[: limit - captured]
                captured += len(block)
                await engine.feed(block)
                view.progress(captured / rate, overflows[0])
        # The stream is stopped: analyze what was captured but not fed yet, then flush.
        while not blocks.empty() and (limit is None or captured < limit):
            block = blocks.get_nowait()
            block = block if limit is None else block[: limit - captured]
            captured += len(block)
            await engine.feed(block)
        view.progress(captured / rate, overflows[0])
        await engine.finish()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def stream_name(device) -> str:
    return "the default input" if device is None else str(device)


# ---- entry point -----------------------------------------------------------------------------
def run(args) -> int:
    """`emostream listen`: 0 on success, 2 on a device, PortAudio, server or model error."""
    try:
        if args.list_devices:
            list_devices()
            return 0
        if args.seconds is not None and args.seconds <= 0:
            raise ListenError("--seconds must be positive")
        parties = listen_parties(args)
        device, name = resolve_device(args.input_device, len(parties) or 1)
        source = f"{name} @ {args.sample_rate} Hz" + (f" → {server_url(args.server)}" if args.server else "")
        view = PlainView(source) if args.plain else None
        if args.server:
            engine_factory = lambda emit: ServerEngine(args.server, args.token, args.sample_rate, emit, args.context, parties)
        else:
            # One stream in this process: --chunk-mode auto is the latency mode (short chunks).
            config = analyzer_config(args).for_stream(alone=True, chunk_given=args.chunk is not None)
            config = dataclasses.replace(config, sample_rate=args.sample_rate)
            scorer = load_scorer_from_args(args)
            data = decision_data(args, scorer)
            make = lambda: StreamAnalyzer(scorer, config, profile=data.profile_for(args.context), centroids=data.centroids)
            engine_factory = lambda emit: LocalEngine(None if parties else make(), emit, parties, make)
        view = view or LiveView(source)
        out = Output(view, args.jsonl)
        try:
            if args.plain:  # the live view shows it in its footer
                view.notice(NOT_A_DIAGNOSIS)
            asyncio.run(capture(args, device, engine_factory(out), view, name, len(parties) or 1))
        finally:
            out.close()
        return 0
    except (EmostreamError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before capture started (e.g. while the model loads)
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["add_listen_options", "input_devices", "list_devices", "run"]
