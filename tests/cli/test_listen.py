"""`emostream listen` against a real audio server: PulseAudio with a pipe source as the microphone.

No mocked sounddevice: a private PulseAudio daemon runs for this module, `module-pipe-source`
is its default source, and a thread writes real espeak speech into the FIFO at real-time pace
while `emostream listen` records from PortAudio's `pulse` device in a subprocess.
Needs the Debian packages `pulseaudio` and `libportaudio2` (and `espeak-ng` for the speech);
without pulseaudio these tests fail rather than skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from server_harness import ROOT, start_server

RATE = 16000
DRIVER = """
import sys
from stream.cli.main import main
sys.exit(main(["listen", *sys.argv[1:]]))
"""


class FifoMic(threading.Thread):
    """Writes 16 kHz s16le audio into the pipe source's FIFO in real time; silence when idle."""

    def __init__(self, fifo: Path):
        super().__init__(daemon=True)
        self.fifo = fifo
        self.pending: list[np.ndarray] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def play(self, samples: np.ndarray) -> None:
        with self.lock:
            self.pending.append((np.clip(samples, -1, 1) * 32767).astype("<i2"))

    def _next_block(self, n: int) -> np.ndarray:
        out = np.zeros(n, "<i2")
        filled = 0
        with self.lock:
            while filled < n and self.pending:
                head = self.pending[0]
                take = min(n - filled, len(head))
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self.pending.pop(0)
                else:
                    self.pending[0] = head[take:]
        return out

    def run(self) -> None:
        try:
            fd = os.open(self.fifo, os.O_WRONLY)
            step = RATE // 50  # 20 ms
            t0, written = time.monotonic(), 0
            try:
                while not self.stopping.is_set():
                    os.write(fd, self._next_block(step).tobytes())
                    written += step
                    ahead = written / RATE - (time.monotonic() - t0)
                    if ahead > 0.05:
                        time.sleep(ahead - 0.05)
                    elif ahead < -0.1:  # the write blocked (nobody read): never burst to catch up
                        t0 = time.monotonic() - written / RATE
            finally:
                os.close(fd)
        except BaseException as exc:  # surfaced by the tests
            self.error = exc


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A private PulseAudio daemon whose default source is a FIFO we write to; yields (env, mic)."""
    with pulse_daemon(tmp_path_factory.mktemp("pulse")) as running:
        yield running


@contextlib.contextmanager
def pulse_daemon(run_dir: Path, channels: int = 1, mic_class=None):
    """Run a private PulseAudio daemon whose default source is a FIFO of `channels` channels."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.fail("pulseaudio is required for these tests (Debian packages pulseaudio libportaudio2)")
    run_dir.chmod(0o700)
    env = dict(
        os.environ,
        XDG_RUNTIME_DIR=str(run_dir),
        PULSE_RUNTIME_PATH=str(run_dir / "pulse"),
        PULSE_STATE_PATH=str(run_dir / "state"),
        PULSE_SERVER=f"unix:{run_dir / 'pulse' / 'native'}",
    )
    subprocess.run(
        ["pulseaudio", "-D", "--system=false", "--exit-idle-time=-1", "-n", "--disallow-exit",
         "--load=module-native-protocol-unix auth-anonymous=1", "--load=module-null-sink", "--log-target=stderr"],
        env=env, check=True, capture_output=True, timeout=30,
    )
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "pulseaudio did not answer pactl info"
            time.sleep(0.2)
        fifo = run_dir / "fakemic.fifo"  # created by the module itself
        subprocess.run(["pactl", "load-module", "module-pipe-source", "source_name=fakemic", f"file={fifo}",
                        "format=s16le", f"rate={RATE}", f"channels={channels}"], env=env, check=True, capture_output=True)
        subprocess.run(["pactl", "set-default-source", "fakemic"], env=env, check=True, capture_output=True)
        mic = (mic_class or FifoMic)(fifo)
        mic.start()
        yield env, mic
        mic.stopping.set()
        mic.join(5)
    finally:
        subprocess.run(["pulseaudio", "-k"], env=env, capture_output=True, timeout=30)


def listen(env, mic, *args, speech: np.ndarray | None = None, interrupt_after: float | None = None,
           timeout: float = 90):
    """Run `emostream listen ARGS`; play `speech` into the mic once it listens, then optionally
    press Ctrl-C (SIGINT) `interrupt_after` seconds later. -> (rc, messages, stderr, stdout)."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=ROOT, env=dict(env, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    out_lines: list[str] = []
    listening = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)
            if line.startswith("listening on"):
                listening.set()

    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True)]
    for r in readers:
        r.start()
    try:
        if speech is not None and listening.wait(60):
            mic.play(speech)
            if interrupt_after is not None:
                time.sleep(len(speech) / RATE + interrupt_after)
                proc.send_signal(signal.SIGINT)
        proc.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise AssertionError("listen did not finish:\n" + "".join(err_lines)) from exc
    for r in readers:
        r.join(5)
    assert mic is None or mic.error is None, mic.error
    out = "".join(out_lines)
    stderr = "".join(err_lines)
    messages = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, messages, stderr, out


def of_type(messages, kind):
    return [m for m in messages if m["type"] == kind]


def check_segments(messages, rec):
    """Two segments whose durations and spacing match the spoken spans (capture adds a latency)."""
    segments = of_type(messages, "segment")
    assert len(segments) == 2, segments
    shifts = [seg["start"] - t0 for seg, (t0, _) in zip(segments, rec.spans)]
    end_shifts = [seg["end"] - t1 for seg, (_, t1) in zip(segments, rec.spans)]
    # The same capture latency for both utterances: the gap between them is preserved.
    assert abs(shifts[0] - shifts[1]) < 0.1, shifts
    assert abs(end_shifts[0] - end_shifts[1]) < 0.25, end_shifts  # VAD hangover varies a little
    # Latency of the capture path, less the VAD's 0.3 s pre-roll: small and non-negative overall.
    assert -0.5 <= shifts[0] <= 2.0, shifts
    for seg, (t0, t1) in zip(segments, rec.spans):
        assert (t1 - t0) - 0.1 <= seg["end"] - seg["start"] <= (t1 - t0) + 0.8
    windows = of_type(messages, "window")
    assert windows
    for seg in segments:
        mine = [w for w in windows if w["segment"] == seg["index"]]
        assert len(mine) == seg["n_windows"] > 0
        assert all(seg["start"] <= w["start"] and w["end"] <= seg["end"] for w in mine)


def test_list_devices_shows_pulse(pulse):
    env, _ = pulse
    rc, _, stderr, out = listen(env, None, "--list-devices", timeout=60)
    assert rc == 0, stderr
    rows = [re.fullmatch(r"([* ]) +(\d+)  (.+)  \((\d+) in, (\d+) Hz\)", line) for line in out.splitlines()]
    devices = {m[3]: m for m in rows if m}
    assert "pulse" in devices, out
    assert int(devices["pulse"][4]) >= 1
    assert sum(m[1] == "*" for m in devices.values()) == 1  # one default, marked
    assert "* = default input" in out


def test_no_such_device_is_one_line_and_exit_2(pulse):
    env, mic = pulse
    rc, messages, stderr, _ = listen(env, mic, "--input-device", "no-such-mic", "--plain", timeout=60)
    assert rc == 2 and messages == []
    assert stderr.strip().splitlines() == [
        "error: input device 'no-such-mic' is not available (No input device matching 'no-such-mic'); see --list-devices"
    ]


def test_listen_analyzes_live_microphone(pulse, tiny_model_dir, speech_silence_speech, tmp_path):
    env, mic = pulse
    rec = speech_silence_speech
    jsonl = tmp_path / "events.jsonl"
    rc, messages, stderr, _ = listen(
        env, mic, "--input-device", "pulse", "--plain", "--seconds", f"{rec.duration + 0.5:.1f}",
        "--model-dir", str(tiny_model_dir), "--device", "cpu", "--threads", "1", "--jsonl", str(jsonl),
        speech=rec.samples,
    )
    assert rc == 0, stderr
    assert messages[0]["type"] == "info" and messages[0]["random_weights"] is True
    assert "RANDOM WEIGHTS" in stderr and "decision support, not a diagnosis" in stderr
    check_segments(messages, rec)
    assert [json.loads(line) for line in jsonl.read_text().splitlines()] == messages


def test_listen_streams_to_a_running_server(pulse, tiny_model_dir, speech_silence_speech, tmp_path):
    env, mic = pulse
    rec = speech_silence_speech
    server = start_server(tiny_model_dir, tmp_path, token="s3cret")
    try:
        rc, messages, stderr, _ = listen(env, mic, "--server", server.ws, "--token", "wrong", "--plain",
                                         "--input-device", "pulse", timeout=60)
        assert rc == 2 and "refused" in stderr and messages == []
        # No --seconds: Ctrl-C ends it, and what was captured is still sent and analyzed.
        rc, messages, stderr, _ = listen(
            env, mic, "--input-device", "pulse", "--plain", "--server", server.ws, "--token", "s3cret",
            speech=rec.samples, interrupt_after=0.3,
        )
    finally:
        server.stop()
    assert rc == 0, stderr
    types = [m["type"] for m in messages]
    assert types[0] == "ready" and "info" in types and types[-1] == "summary", types
    assert "RANDOM WEIGHTS" in stderr
    check_segments(messages, rec)
    session = messages[0]["session_id"]
    meta = json.loads((server.recordings / session / "session.json").read_text())
    assert meta["metadata"] == {"source": "emostream listen"}
    assert messages[-1]["stats"]["status"] == "complete"
    assert messages[-1]["stats"]["duration_seconds"] >= rec.duration


def test_live_view_shows_withheld_calls_and_quotes_evidence():
    from stream.cli.listen import LiveState

    state = LiveState("test")
    state.update({"type": "segment", "index": 2, "start": 4.0, "end": 6.5, "emotion": "unknown", "confidence": 0.4,
                  "n_windows": 22, "decision": {"withheld": "fearful withheld: audio below the quality bar (SNR 8.0 dB < 15 dB)"}})
    state.update({"type": "review", "segment": 2, "start": 4.0, "end": 6.5, "leading": "fearful",
                  "runner_up": "disgusted", "gap": 0.04, "reason": "…", "evidence": "fearful: F0 rise-fall"})
    text = "\n".join(line for line, _ in state.lines())
    assert "⚑ WITHHELD segment 2: fearful withheld: audio below the quality bar (SNR 8.0 dB < 15 dB)" in text
    assert "⚑ REVIEW segment 2: fearful vs disgusted (gap 0.04) — fearful: F0 rise-fall" in text
