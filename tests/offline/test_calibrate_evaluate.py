"""`emostream calibrate`, `evaluate` and `embeddings plot` end to end with the tiny model and real files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from audio_fixtures import espeak, write_wav16
from models.errors import ConfigError
from models.labels import LABELS
from stream.cli.main import main
from stream.decision.fusion import Centroids
from stream.offline.evaluation import compute_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEXTS = {
    "fearful": ["Help me, something is coming through the door.", "Please hurry, I think someone is inside."],
    "disgusted": ["Ugh, that smells rotten and awful.", "That food is spoiled, throw it away."],
    "neutral": ["The meeting starts at ten tomorrow."],
}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A folder per label of real espeak clips (alias folder names included) and the same as a manifest."""
    root = tmp_path_factory.mktemp("labelled")
    rows = []
    for label, texts in TEXTS.items():
        folder = root / "data" / {"fearful": "fear", "disgusted": "disgust", "neutral": "neutral"}[label]
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            path = folder / f"{label}{i}.wav"
            write_wav16(path, espeak(text, root / "raw.wav", pitch=30 + 20 * i))
            rows.append({"path": str(path.relative_to(root)), "label": label})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def model_args(model_dir):
    return ["--model-dir", str(model_dir), "--device", "cpu"]


def test_calibrate_from_folders_writes_centres_with_metadata(labelled, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "centres.npz"
    assert main(["calibrate", str(labelled / "data"), "--out", str(out), *model_args(tiny_model_dir)]) == 0
    centres = Centroids.load(out, expect_model_id="tiny", expect_dim=64)
    assert centres.counts == {"fearful": 2, "disgusted": 2} and centres.method == "labelled"
    assert np.linalg.norm(centres.fear) <= 1.0 + 1e-6  # a mean of unit vectors
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["model_id"] == "tiny" and report["dim"] == 64 and report["items"] == 5
    assert sum(c["size"] for c in report["kmeans_view"]) == 4  # the KMeans view of the fear/disgust items
    printed = capsys.readouterr()
    assert "fearful 2 items, disgusted 2 items" in printed.out and "random-weight" in printed.err
    # Centres from another model are refused where they would be used.
    with pytest.raises(ConfigError, match="was made with model 'tiny'"):
        Centroids.load(out, expect_model_id="iic/emotion2vec_plus_large")


def test_centres_of_another_model_are_an_error_for_analyze(labelled, tiny_model_dir, tmp_path, capsys):
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    out = tmp_path / "centres.npz"
    assert main(["calibrate", str(labelled / "manifest.jsonl"), "--out", str(out), *model_args(other)]) == 0
    wav = next((labelled / "data" / "fear").glob("*.wav"))
    code = main(["analyze", str(wav), "--centroids", str(out), "--out", str(tmp_path / "o"), "-q",
                 *model_args(tiny_model_dir)])  # fmt: skip
    assert code == 2 and "was made with model 'other-model'" in capsys.readouterr().err


def test_analyze_with_centres_profile_and_context_records_them(labelled, tiny_model_dir, tmp_path):
    centres = tmp_path / "centres.npz"
    profiles = tmp_path / "profiles.yaml"
    assert main(["calibrate", str(labelled / "data"), "--out", str(centres), "--domain", "medical",
                 "--profiles-out", str(profiles), *model_args(tiny_model_dir)]) == 0  # fmt: skip
    library = yaml.safe_load(profiles.read_text())
    bias = library["profiles"]["medical"]["logit_bias"]
    assert set(bias) == set(LABELS) and any(v != 0 for v in bias.values())
    assert not any(library["profiles"]["education"]["logit_bias"].values())  # other profiles untouched
    wav = next((labelled / "data" / "fear").glob("*.wav"))
    assert main(["analyze", str(wav), "--centroids", str(centres), "--profiles", str(profiles),
                 "--context", "medical consultation", "--out", str(tmp_path / "o"), "-q",
                 *model_args(tiny_model_dir)]) == 0  # fmt: skip
    result = json.loads(next((tmp_path / "o").glob("*/result.json")).read_text())
    assert result["profile"]["name"] == "medical" and result["profile"]["logit_bias"] == pytest.approx(bias)
    assert result["decision"]["profile"] == "medical" and result["context"] == "medical consultation"
    assert result["emotion"] == result["decision"]["emotion"]


def test_calibrate_from_saved_embeddings(labelled, tiny_model_dir, tmp_path):
    rows = []
    for label, folder in (("fearful", "fear"), ("disgusted", "disgust")):
        for wav in sorted((labelled / "data" / folder).glob("*.wav")):
            out = tmp_path / "runs" / wav.stem
            assert main(["analyze", str(wav), "--embedding", "--out", str(out), "-q", *model_args(tiny_model_dir)]) == 0
            rows.append({"path": str(next(out.glob("*/embedding.npy"))), "label": label})
    manifest = tmp_path / "embeddings.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "from-embeddings.npz"
    assert main(["calibrate", str(manifest), "--out", str(out)]) == 0  # no model needed
    from_npy = Centroids.load(out, expect_model_id="tiny")  # the model id came from result.json
    from_audio = tmp_path / "from-audio.npz"
    assert main(["calibrate", str(labelled / "data"), "--out", str(from_audio), *model_args(tiny_model_dir)]) == 0
    np.testing.assert_allclose(from_npy.fear, Centroids.load(from_audio).fear, atol=1e-5)


def test_evaluate_writes_metrics_that_match_its_predictions(labelled, tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", str(labelled / "manifest.jsonl"), "--out", str(out), *model_args(tiny_model_dir)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    items = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(items) == metrics["n"] == 5
    truth, pred = [i["label"] for i in items], [i["prediction"] for i in items]
    assert metrics["accuracy"] == pytest.approx(np.mean([t == p for t, p in zip(truth, pred)]))
    pair = [t == p for t, p in zip(truth, pred) if t in ("fearful", "disgusted")]
    assert metrics["pair_accuracy"] == pytest.approx(np.mean(pair))
    assert metrics["review_rate"] == pytest.approx(np.mean([i["review"] for i in items]))
    assert metrics == {**metrics, **compute_metrics(truth, pred, review_flags=[i["review"] for i in items])}
    assert [s["step"] for s in metrics["steps"]] == ["model", "+profile", "+focus", "+fusion", "+quality gate"]
    assert metrics["steps"][0]["pair_accuracy"] == pytest.approx(
        np.mean([i["steps"]["model"] == t for i, t in zip(items, truth) if t in ("fearful", "disgusted")])
    )
    assert np.asarray(metrics["confusion_matrix"]).shape == (9, 9) and metrics["random_weights"] is True
    assert (out / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)


def test_evaluate_skips_unreadable_items_with_a_message(labelled, tiny_model_dir, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    good = next((labelled / "data" / "fear").glob("*.wav"))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    manifest.write_text(json.dumps({"path": str(good), "label": "fear"}) + "\n"
                        + json.dumps({"path": str(broken), "label": "disgust"}) + "\n")  # fmt: skip
    assert main(["evaluate", str(manifest), "--out", str(tmp_path / "e"), *model_args(tiny_model_dir)]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n"] == 1
    assert "broken.wav" in capsys.readouterr().err


def test_embeddings_plot_from_labelled_audio(labelled, tiny_model_dir, tmp_path):
    out = tmp_path / "map.png"
    assert main(["embeddings", "plot", str(labelled / "manifest.jsonl"), "--out", str(out),
                 *model_args(tiny_model_dir)]) == 0  # fmt: skip
    assert out.read_bytes().startswith(PNG_MAGIC)
