"""`emostream analyze` end to end: real files in five formats, outputs, and bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import ffmpeg_convert, write_wav16
from models.errors import AudioError
from models.frames import n_frames
from stream.cli.main import main
from stream.offline.audio_file import load

FORMATS = {  # suffix -> ffmpeg options: varied rates and channel counts exercise resampling/mixing
    ".wav": ["-ar", "16000"],
    ".mp3": ["-ar", "44100", "-ac", "2"],
    ".m4a": ["-ar", "48000", "-c:a", "aac"],
    ".flac": ["-ar", "22050"],
    ".ogg": ["-ar", "32000", "-c:a", "libvorbis"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, speech_silence_speech):
    d = tmp_path_factory.mktemp("inputs")
    src = write_wav16(d / "source.wav", speech_silence_speech.samples)
    return {ext: ffmpeg_convert(src, d / f"call{ext}", *opts) for ext, opts in FORMATS.items()}


def run(args, model_dir, out):
    return main(["analyze", *map(str, args), "--model-dir", str(model_dir), "--device", "cpu", "--out", str(out), "-q"])


def only_dir(out: Path, stem: str) -> Path:
    found = sorted(out.glob(f"{stem}_*"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("ext", list(FORMATS))
def test_every_format_decodes_to_16k_mono(files, speech_silence_speech, ext):
    audio = load(files[ext])
    samples = audio.samples
    assert audio.rate == int(FORMATS[ext][1])
    # Lossy codecs pad a little; the duration stays within 60 ms.
    assert abs(len(samples) / 16000 - speech_silence_speech.duration) < 0.06
    assert samples.dtype == np.float32 and 0.1 < np.abs(samples).max() <= 1.0


def test_analyze_frame_granularity_writes_all_outputs(files, tiny_model_dir, tmp_path, speech_silence_speech, scorer):
    assert run([files[".wav"], "--granularity", "frame", "--embedding", "--context", "crisis hotline"], tiny_model_dir, tmp_path) == 0
    out = only_dir(tmp_path, "call")
    assert sorted(p.name for p in out.iterdir()) == [
        "embedding.npy", "events.jsonl", "processed_audio.wav", "result.json", "timeline.png"
    ]
    result = json.loads((out / "result.json").read_text())
    assert result["granularity"] == "frame" and result["context"] == "crisis hotline"
    assert result["random_weights"] is True and "RANDOM WEIGHTS" in result["warning"]
    assert result["precision"] == "float32"  # the tests' EMOSTREAM_DTYPE
    assert set(result["scores"]) == set(scorer.labels) and abs(sum(result["scores"].values()) - 1) < 1e-4
    assert result["emotion"] == max(result["scores"], key=result["scores"].get)
    assert result["confidence"] == result["scores"][result["emotion"]]
    segments = result["segments"]
    assert len(segments) == 2
    for seg, (t0, t1) in zip(segments, speech_silence_speech.spans):
        assert t0 - 0.5 <= seg["start"] <= t0 + 0.05 and t1 - 0.05 <= seg["end"] <= t1 + 0.5
    assert len(result["windows"]) == sum(s["n_windows"] for s in segments) > 0
    lines = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "info" and lines[0]["random_weights"] is True and lines[0]["precision"] == "float32"
    assert [l for l in lines if l["type"] == "window"] == result["windows"]
    emb = np.load(out / "embedding.npy")
    assert emb.shape == (n_frames(len(speech_silence_speech.samples)), scorer.embed_dim)  # (T, D)
    with wave.open(str(out / "processed_audio.wav")) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        assert abs(w.getnframes() / 16000 - speech_silence_speech.duration) < 0.01
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_utterance_scores_match_scorer_on_the_decoded_file(files, tiny_model_dir, tmp_path, scorer):
    assert run([files[".flac"], "--embedding"], tiny_model_dir, tmp_path) == 0
    result = json.loads((only_dir(tmp_path, "call") / "result.json").read_text())
    samples = load(files[".flac"]).samples
    expected = scorer.utterance_scores(scorer.score([samples])[0])
    assert np.abs(np.array([result["scores"][l] for l in scorer.labels]) - expected).max() < 1e-5
    assert "windows" not in result and result["granularity"] == "utterance"
    assert np.load(only_dir(tmp_path, "call") / "embedding.npy").shape == (scorer.embed_dim,)


@pytest.mark.parametrize("dtype", ["auto", "int8"])
def test_result_says_which_precision_ran(files, tiny_model_dir, tmp_path, dtype):
    from models.loader import resolve_dtype

    assert run([files[".wav"], "--dtype", dtype], tiny_model_dir, tmp_path) == 0
    result = json.loads((only_dir(tmp_path, "call") / "result.json").read_text())
    assert result["precision"] == resolve_dtype(dtype, "cpu") != "auto"


def test_many_formats_in_one_run(files, tiny_model_dir, tmp_path):
    assert run(list(files.values()), tiny_model_dir, tmp_path) == 0
    assert len(list(tmp_path.glob("call_*"))) == len(FORMATS)  # same stem, distinct folders


def test_bad_inputs_fail_clearly_and_others_still_run(files, tiny_model_dir, tmp_path, capsys, rng):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "corrupt.mp3").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    write_wav16(bad / "short.wav", np.zeros(1600, np.float32))  # 0.1 s
    code = run(
        [bad / "empty.wav", bad / "corrupt.mp3", files[".ogg"], bad / "short.wav", bad / "missing.wav"],
        tiny_model_dir,
        tmp_path / "out",
    )
    assert code == 1
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 4, err
    assert any("empty.wav" in l for l in errors) and any("corrupt.mp3" in l for l in errors)
    assert any("short.wav" in l and "too short" in l for l in errors)
    assert any("missing.wav" in l and "no such file" in l for l in errors)
    assert len(list((tmp_path / "out").glob("call_*"))) == 1  # the good file was analyzed


def test_silent_file_has_no_segments(tiny_model_dir, tmp_path):
    src = write_wav16(tmp_path / "quiet.wav", np.zeros(16000 * 2, np.float32))
    assert run([src, "--granularity", "frame"], tiny_model_dir, tmp_path / "out") == 0
    result = json.loads((only_dir(tmp_path / "out", "quiet") / "result.json").read_text())
    assert result["segments"] == [] and result["windows"] == []


def test_corrupt_decoder_input_raises_audio_error(tmp_path):
    (tmp_path / "x.flac").write_bytes(b"fLaC" + b"\x00" * 100)
    with pytest.raises(AudioError):
        load(tmp_path / "x.flac")


def test_console_script_reports_missing_weights_helpfully(tmp_path, files):
    env = dict(os.environ, EMOSTREAM_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), MODELSCOPE_CACHE=str(tmp_path / "ms"))
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "analyze", str(files[".wav"]), "--model", "base", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2
    assert "iic/emotion2vec_plus_base" in proc.stderr and "--model-dir" in proc.stderr
