"""Model directories with PLANTED weights: the real architecture whose head follows a chosen rule.

Random weights raise no alerts, so the alert path (flagged fear → disgust transitions, review
flags, dual-emotion reports) could never be exercised end to end with real speech. A planted
model keeps the random encoder of `random_weights.write_random_model_dir` and replaces only the
final projection head (`model.proj`): a linear read-out, fitted by least squares on espeak-ng
speech, of the frame's spectral *brightness* (spectral centroid, standardised). Fearful and
disgusted get a high common logit and split that read-out between them, so dark stretches of
speech lean fearful, bright (hissy) stretches disgusted, and the two swap every second or so
with near-ties in between. Everything else loads through the normal loader.

This is a test and demo instrument. Its scores are NOT emotion recognition: the directory's
marker says `planted`, and every info event and result carries the planted warning.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from .frames import FRAME_STRIDE, SAMPLE_RATE
from .labels import LABELS, token_to_label
from .loader import ModelOptions, load_scorer
from .random_weights import MARKER, write_random_model_dir
from .scoring import PLANTED_WEIGHTS_WARNING

PLANTED_KINDS = ("fear-disgust",)
FIELD = 400  # samples per frame's spectrum: the model's 25 ms receptive field

# Training speech: sentences none of the tests use, several voices and pitches, so the read-out
# follows brightness rather than one voice.
_SENTENCES = (
    "I do not know what is happening, there is somebody outside the door.",
    "The weather was cold and the streets were empty all night long.",
    "She opened the window and looked at the garden for a while.",
    "We need to talk about what happened yesterday at the office.",
    "Six thick thistle sticks were sitting on the shelf in the shed.",
    "Nobody answered the phone when I called the number you gave me.",
)
_VOICES = (("en", 40), ("en+f3", 60), ("en+m3", 30), ("en-us", 70))


@dataclass(frozen=True)
class PlantedHead:
    """How the head is planted: the fitted read-out's strength and where fear and disgust sit."""

    kind: str = "fear-disgust"
    base_logit: float = 4.0  # fearful and disgusted start this far above the other seven
    gain: float = 3.5  # logit split per standard deviation of brightness (disgusted +, fearful -)
    fit_r: float = 0.0  # correlation of the read-out with brightness on the training speech


def brightness(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """Spectral centroid (Hz) of each 20 ms frame's 25 ms field, on the model's frame grid."""
    x = np.pad(np.asarray(samples, np.float64), (0, max(0, n_frames * FRAME_STRIDE + FIELD - len(samples))))
    idx = np.arange(n_frames)[:, None] * FRAME_STRIDE + np.arange(FIELD)[None, :]
    power = np.abs(np.fft.rfft(x[idx] * np.hanning(FIELD), axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(FIELD, 1 / SAMPLE_RATE)
    return (power * freqs).sum(axis=1) / power.sum(axis=1)


def _espeak(text: str, voice: str, pitch: int, folder: Path) -> np.ndarray:
    """espeak-ng speech as 16 kHz float32, trimmed to its audible span."""
    path = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    audible = np.flatnonzero(np.abs(x) > 1e-3)
    x = x[audible[0] : audible[-1] + 1]
    return soxr.resample(x, rate, SAMPLE_RATE).astype(np.float32)


def _training_target(x: np.ndarray, n_frames: int) -> np.ndarray:
    """Log brightness per frame; frames 40 dB under the clip's loudest get NaN (no brightness to read)."""
    idx = np.minimum(np.arange(n_frames)[:, None] * FRAME_STRIDE + np.arange(FIELD)[None, :], len(x) - 1)
    power = np.mean(np.asarray(x, np.float64)[idx] ** 2, axis=1)
    target = np.log(brightness(x, n_frames))
    target[power < power.max() * 1e-4] = np.nan
    return target


def _fit_readout(scorer, folder: Path) -> tuple[np.ndarray, float, float]:
    """Least-squares read-out (weights, bias) of standardised log brightness from frame features, and its r.

    Each clip is padded with faint noise, whose frames are fitted to 0: silence and the VAD's
    pre-roll lean to neither emotion.
    """
    rng = np.random.default_rng(0)
    features, targets = [], []
    for text in _SENTENCES:
        for voice, pitch in _VOICES:
            speech = _espeak(text, voice, pitch, folder)
            pad = np.zeros(SAMPLE_RATE // 2, np.float32)
            x = np.concatenate([pad, speech, pad])
            x = x + 10 ** (-65 / 20) * rng.standard_normal(len(x)).astype(np.float32)
            out = scorer.score([x])[0]
            features.append(out.features.astype(np.float64))
            targets.append(_training_target(x, len(out.features)))
    X, y = np.concatenate(features), np.concatenate(targets)
    active = ~np.isnan(y)
    y[active] = np.clip((y[active] - y[active].mean()) / y[active].std(), -2.5, 2.5)
    y[~active] = 0.0
    A = np.c_[X, np.ones(len(X))]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    r = float(np.corrcoef((A @ coef)[active], y[active])[0, 1])
    return coef[:-1], float(coef[-1]), r


def write_planted_model_dir(
    path: str | Path, arch: str = "tiny", kind: str = "fear-disgust", seed: int = 0, head: PlantedHead = PlantedHead()
) -> Path:
    """Write a model directory of architecture `arch`: random encoder, head planted for `kind`."""
    import torch  # here, not at import: the CLI imports this module, and `models` loads no torch

    if kind not in PLANTED_KINDS:
        raise ValueError(f"planted must be one of {', '.join(PLANTED_KINDS)}, got {kind!r}")
    if shutil.which("espeak-ng") is None:
        raise RuntimeError(
            "a planted model is fitted on espeak-ng speech: install it (Debian package espeak-ng)"
        )
    path = write_random_model_dir(path, arch, seed)
    scorer = load_scorer(ModelOptions(model_dir=str(path), device="cpu", offline=True))
    with tempfile.TemporaryDirectory() as tmp:
        w, b, r = _fit_readout(scorer, Path(tmp))
    head = PlantedHead(kind, head.base_logit, head.gain, round(r, 3))
    state = torch.load(path / "model.pt", map_location="cpu")
    weight, bias = state["proj.weight"], state["proj.bias"]
    weight.zero_()
    bias.zero_()
    tokens = (path / "tokens.txt").read_text(encoding="utf-8").split()
    fear, disgust = _row(tokens, "fearful"), _row(tokens, "disgusted")
    # fearful = base - gain·brightness, disgusted = base + gain·brightness: the pair always leads,
    # and which of the two leads follows the read-out.
    for row, sign in ((fear, -1.0), (disgust, 1.0)):
        weight[row] = torch.as_tensor(sign * head.gain * w, dtype=weight.dtype)
        bias[row] = head.base_logit + sign * head.gain * b
    torch.save(state, path / "model.pt")
    marker = json.loads((path / MARKER).read_text())
    marker.update(planted=kind, head=asdict(head), warning=PLANTED_WEIGHTS_WARNING)
    (path / MARKER).write_text(json.dumps(marker))
    return path


def _row(tokens: list[str], label: str) -> int:
    """The head row of `label` in the model's token list."""
    rows = [i for i, t in enumerate(tokens) if token_to_label(t) == label]
    if len(rows) != 1 or label not in LABELS:
        raise ValueError(f"expected one token for {label}, found {len(rows)}")
    return rows[0]
