"""`emostream analyze --split-channels`: a stereo file's channels analyzed as parties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from audio_fixtures import write_stereo16, write_wav16
from PIL import Image

from stream.cli.main import main


def run(args, model_dir, out):
    return main(["analyze", *map(str, args), "--model-dir", str(model_dir), "--device", "cpu", "--out", str(out), "-q"])


def only_dir(root):
    [d] = [p for p in root.iterdir() if p.is_dir()]
    return d


def test_each_channel_is_analyzed_as_if_it_were_a_mono_file(two_voices, tiny_model_dir, tmp_path):
    caller, agent = two_voices
    stereo = write_stereo16(tmp_path / "call.wav", caller, agent)
    out = tmp_path / "split"
    assert run([stereo, "--split-channels", "--parties", "caller,agent", "--granularity", "frame", "--embedding"],
               tiny_model_dir, out) == 0
    folder = only_dir(out)
    assert sorted(p.name for p in folder.iterdir()) == [
        "embedding-agent.npy", "embedding-caller.npy", "events.jsonl", "processed_audio-agent.wav",
        "processed_audio-caller.wav", "result.json", "timeline.png",
    ]
    result = json.loads((folder / "result.json").read_text())
    assert result["split_channels"] is True and list(result["parties"]) == ["caller", "agent"]
    assert result["random_weights"] is True and "RANDOM WEIGHTS" in result["warning"]
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    for channel, (party, voice) in enumerate((("caller", caller), ("agent", agent))):
        mono_out = tmp_path / f"mono-{party}"
        assert run([write_wav16(tmp_path / f"{party}.wav", voice), "--granularity", "frame", "--embedding"],
                   tiny_model_dir, mono_out) == 0
        mono = only_dir(mono_out)
        alone = [json.loads(line) for line in (mono / "events.jsonl").read_text().splitlines()]
        mine = [{k: v for k, v in e.items() if k != "party"} for e in events if e["party"] == party]
        assert mine == alone  # exactly the events of that channel alone
        single = json.loads((mono / "result.json").read_text())
        theirs = result["parties"][party]
        assert theirs.pop("channel") == channel
        for key in ("timestamp", "source"):
            theirs.pop(key), single.pop(key)
        assert theirs == single
        assert np.array_equal(np.load(folder / f"embedding-{party}.npy"), np.load(mono / "embedding.npy"))
    assert [e["party"] for e in events if e["type"] == "info"] == ["caller", "agent"]
    # Two lanes: the split timeline is taller than one file's, one lane per party.
    with Image.open(folder / "timeline.png") as split_png, Image.open(only_dir(tmp_path / "mono-caller") / "timeline.png") as one:
        assert split_png.width == one.width and split_png.height == pytest.approx(1.5 * one.height, abs=2)


def test_default_party_names_are_the_channel_indices(two_voices, tiny_model_dir, tmp_path):
    stereo = write_stereo16(tmp_path / "call.wav", *two_voices)
    assert run([stereo, "--split-channels"], tiny_model_dir, tmp_path / "out") == 0
    assert list(json.loads((only_dir(tmp_path / "out") / "result.json").read_text())["parties"]) == ["0", "1"]


def test_bad_splits_are_clear_errors_and_other_files_go_on(two_voices, speech_silence_speech, tiny_model_dir, tmp_path, capsys):
    mono = write_wav16(tmp_path / "mono.wav", speech_silence_speech.samples)
    stereo = write_stereo16(tmp_path / "call.wav", *two_voices)
    assert run([mono, stereo, "--split-channels"], tiny_model_dir, tmp_path / "a") == 1
    err = capsys.readouterr().err
    assert "mono.wav: has one channel; there is nothing to split" in err
    assert len(list((tmp_path / "a").iterdir())) == 1  # the stereo file was still analyzed
    assert run([stereo, "--split-channels", "--parties", "a,b,c"], tiny_model_dir, tmp_path / "b") == 1
    assert "3 parties for 2 channel(s)" in capsys.readouterr().err
    assert run([stereo, "--parties", "a,b"], tiny_model_dir, tmp_path / "c") == 2
    assert "add --split-channels" in capsys.readouterr().err
