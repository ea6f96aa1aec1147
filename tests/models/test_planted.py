"""The planted fear/disgust model: real architecture, random encoder, a head fitted to raise alerts."""

from __future__ import annotations

import json

import numpy as np
import torch

from models.random_weights import MARKER, write_random_model_dir
from models.scoring import PLANTED_WEIGHTS_WARNING
from stream.engine.analyzer import StreamAnalyzer
from stream.engine.config import AnalyzerConfig
from stream.offline.analyze import analyze_audio
from stream.offline.audio_file import DecodedAudio


def test_marker_says_planted_and_loader_marks_it(planted_model_dir, planted_scorer):
    marker = json.loads((planted_model_dir / MARKER).read_text())
    assert marker["planted"] == "fear-disgust" and marker["warning"] == PLANTED_WEIGHTS_WARNING
    assert "not emotion recognition" in marker["warning"]
    # The read-out really follows brightness on the training speech (a fitted head, not a constant).
    assert marker["head"]["fit_r"] > 0.5
    assert planted_scorer.random_weights is True and planted_scorer.planted == "fear-disgust"


def test_only_the_head_differs_from_the_random_model(planted_model_dir, tmp_path):
    random_dir = write_random_model_dir(tmp_path / "random", arch="tiny", seed=0)
    planted = torch.load(planted_model_dir / "model.pt", map_location="cpu")
    random = torch.load(random_dir / "model.pt", map_location="cpu")
    assert planted.keys() == random.keys()
    changed = {k for k in planted if not torch.equal(planted[k], random[k])}
    assert changed == {"proj.weight", "proj.bias"}
    tokens = (planted_model_dir / "tokens.txt").read_text(encoding="utf-8").split()
    rows = np.flatnonzero(planted["proj.weight"].abs().sum(dim=1).numpy())
    assert sorted(tokens[i] for i in rows) == ["厌恶/disgusted", "恐惧/fearful"]


def test_real_speech_raises_flagged_transitions_reviews_and_a_dual_report(planted_scorer, alert_speech):
    analyzer = StreamAnalyzer(planted_scorer, AnalyzerConfig())
    events = analyzer.feed(alert_speech.samples) + analyzer.flush()
    info = events[0]
    assert info.type == "info" and info.planted == "fear-disgust" and info.warning == PLANTED_WEIGHTS_WARNING
    pairs = {(e.from_emotion, e.to_emotion) for e in events if e.type == "transition" and e.flagged}
    assert ("fearful", "disgusted") in pairs and ("disgusted", "fearful") in pairs
    reviews = [e for e in events if e.type == "review"]
    duals = [e for e in events if e.type == "dual_emotion"]
    assert reviews and all({e.leading, e.runner_up} == {"fearful", "disgusted"} for e in reviews)
    assert duals and set(duals[0].emotions) == {"fearful", "disgusted"}
    # Near-ties: in every segment fear and disgust lead the other seven and stay close.
    for seg in (e for e in events if e.type == "segment"):
        top2 = sorted(seg.scores, key=seg.scores.get, reverse=True)[:2]
        assert set(top2) == {"fearful", "disgusted"}
        assert abs(seg.scores["fearful"] - seg.scores["disgusted"]) < 0.3


def test_offline_result_json_says_planted(planted_scorer, alert_speech):
    audio = DecodedAudio(alert_speech.samples, alert_speech.rate, alert_speech.samples)
    result = analyze_audio(planted_scorer, audio, "alert.wav", "frame", None, AnalyzerConfig())
    body = result.to_json({})
    assert body["random_weights"] is True and body["planted"] == "fear-disgust"
    assert body["warning"] == PLANTED_WEIGHTS_WARNING
