"""Minutes of speech-like benchmark audio: espeak-ng sentences with short pauses, cached.

The audio is real synthetic speech (varied voices, pitch, speed and loudness) so that the
engine's VAD and chunking see what a live talker produces: speech runs broken by pauses of
0.2-0.6 s. It carries no emotion; it only sets how much speech the model has to score.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 16_000
VERSION = 1  # bump when the generator changes so stale cache files are not reused

_SUBJECTS = (
    "My neighbour", "The old captain", "Our new teacher", "A tired nurse", "The girl next door",
    "Your brother", "The bus driver", "Every student", "The mayor", "A stranger at the station",
    "My grandmother", "The engineer", "Nobody in the office", "The little boy", "Her best friend",
)
_VERBS = (
    "forgot", "found", "painted", "sold", "carried", "lost", "repaired", "described",
    "photographed", "borrowed", "ordered", "hid", "cleaned", "measured", "returned",
)
_OBJECTS = (
    "the blue umbrella", "a box of letters", "the kitchen window", "two tickets to the concert",
    "the broken bicycle", "a map of the mountains", "the last piece of cake", "an old violin",
    "the heavy suitcase", "a basket of apples", "the wooden chair", "a jar of honey",
    "the garden gate", "a stack of newspapers", "the silver key",
)
_TAILS = (
    "before the storm arrived", "on a quiet Sunday morning", "without telling anyone",
    "right after lunch", "in the middle of the night", "while the radio was playing",
    "just before the train left", "during the long winter", "as the sun went down",
    "because nobody else would", "after the meeting ended", "near the old harbour",
    "at the end of the street", "for the third time this week", "without saying a word",
)
_STANDALONE = (
    "Are you really sure that is what you want?",
    "I cannot believe they cancelled the whole trip!",
    "Please leave the door open when you go out.",
    "Well, that was not what I expected at all.",
    "Why does this always happen on a Monday?",
    "Listen, we have to talk about what happened yesterday.",
    "Oh no, the milk is everywhere again.",
    "That is the best news I have heard in years!",
    "Could you tell me the way to the library, please?",
    "I think we should wait a little longer.",
    "Stop right there and put that down.",
    "Honestly, I do not know how to thank you.",
    "It was cold, dark, and very, very quiet.",
    "Nobody told me the meeting had moved to Thursday.",
    "Wait, did you hear that noise upstairs?",
    "We finally made it, after all those hours on the road.",
    "Seven hundred and forty two people signed the letter.",
    "You promised you would call me, and you never did.",
)
_LANGS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan")
_VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+f5", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7")


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(_STANDALONE)
    text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
    return text + rng.choice((".", ".", "!", "?"))


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise RuntimeError(f"expected 16-bit wav from espeak-ng, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        data = data.reshape(-1, w.getnchannels()).mean(axis=1)
        return (data / 32768.0).astype(np.float32), w.getframerate()


def _trim(x: np.ndarray, rate: int, threshold: float = 0.01, margin_s: float = 0.02) -> np.ndarray:
    """Cut espeak's own leading and trailing silence so that our pauses set the gaps."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if len(loud) == 0:
        return x[:0]
    margin = int(margin_s * rate)
    return x[max(0, loud[0] - margin) : loud[-1] + margin]


def synthesize(seconds: float, seed: int = 0) -> tuple[np.ndarray, dict]:
    """At least `seconds` of 16 kHz float32 speech with pauses; returns (audio, description)."""
    import soxr

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    rng = random.Random(seed)
    parts: list[np.ndarray] = [np.zeros(int(0.3 * RATE), dtype=np.float32)]
    total = len(parts[0])
    n_sentences, pauses, voices = 0, [], set()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        while total < seconds * RATE:
            voice = rng.choice(_LANGS) + rng.choice(_VARIANTS)
            cmd = [
                "espeak-ng", "-w", str(wav), "-v", voice,
                "-p", str(rng.randint(25, 75)),  # pitch 0-99, default 50
                "-s", str(rng.randint(135, 195)),  # words per minute, default 175
                "-a", str(rng.randint(60, 160)),  # amplitude, default 100
                _sentence(rng),
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            x, rate = _read_wav(wav)
            x = _trim(x, rate)
            if rate != RATE:
                x = soxr.resample(x, rate, RATE).astype(np.float32)
            pause = rng.uniform(0.2, 0.6)
            parts += [x, np.zeros(int(pause * RATE), dtype=np.float32)]
            total += len(x) + len(parts[-1])
            n_sentences += 1
            pauses.append(pause)
            voices.add(voice)
    audio = np.concatenate(parts)[: int(seconds * RATE)]
    # A faint noise floor: real microphones never deliver digital silence.
    audio += np.random.default_rng(seed).normal(0.0, 3e-4, len(audio)).astype(np.float32)
    np.clip(audio, -1.0, 1.0, out=audio)
    info = {
        "sentences": n_sentences,
        "voices": len(voices),
        "pause_seconds": [round(min(pauses), 2), round(max(pauses), 2)],
    }
    return audio, info


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit mono 16 kHz wav."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def benchmark_audio(cache_dir: Path, minutes: float, seed: int = 0) -> tuple[np.ndarray, Path, bool]:
    """The cached benchmark recording (made on first use): (16 kHz float32 audio, path, was_cached)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"speech_{minutes:g}min_seed{seed}_v{VERSION}.wav"
    cached = path.is_file()
    if not cached:
        audio, _ = synthesize(minutes * 60.0, seed)
        tmp = path.with_suffix(".tmp.wav")
        write_wav(tmp, audio)
        tmp.replace(path)
    audio, rate = _read_wav(path)
    assert rate == RATE
    return audio, path, cached
