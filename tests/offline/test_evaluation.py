"""Evaluation: manifest reading, metrics against hand-computed values, report files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.errors import ConfigError
from models.labels import LABELS
from stream.offline.evaluation import compare_steps, compute_metrics, plot_embeddings, read_manifest, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (manifest row, prediction): ten items, mixing our field names and EmoBox's
ROWS = [
    ({"path": "clips/01.wav", "label": "fearful"}, "fearful"),
    ({"audio": "clips/02.wav", "label": "fearful"}, "disgusted"),
    ({"source": "clips/03.wav", "label": "fear"}, "fearful"),
    ({"key": "k04", "wav": "clips/04.wav", "emo": "dis"}, "disgusted"),
    ({"key": "k05", "wav": "clips/05.wav", "emo": "disgust"}, "fearful"),
    ({"key": "k06", "wav": "clips/06.wav", "emo": "ang"}, "angry"),
    ({"path": "clips/07.wav", "label": "angry"}, "disgusted"),
    ({"path": "clips/08.wav", "label": "Neutral"}, "neutral"),
    ({"path": "/abs/09.wav", "label": "neu"}, "sad"),
    ({"path": "clips/10.wav", "label": "happy"}, "happy"),
]
FLAGS = [False, True, False, False, True, False, False, False, False, False]


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "data" / "manifest.jsonl"
    path.parent.mkdir()
    lines = [json.dumps(row) for row, _ in ROWS]
    lines.insert(5, "")  # blank lines are skipped
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_manifest_fields_labels_and_paths(manifest):
    items = read_manifest(manifest)
    assert len(items) == 10
    assert [i.label for i in items] == [
        "fearful", "fearful", "fearful", "disgusted", "disgusted",
        "angry", "angry", "neutral", "neutral", "happy",
    ]  # fmt: skip
    assert items[0].path == manifest.parent / "clips" / "01.wav"
    assert items[8].path.as_posix() == "/abs/09.wav"
    assert items[3].key == "k04" and items[0].key == "01"
    assert items[6].line == 8  # after the blank line


@pytest.mark.parametrize(
    "bad, match",
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"label": "sad"}', "line 2: no audio path"),
        ('{"path": "a.wav"}', "line 2: no label"),
        ('{"path": "a.wav", "label": "scared"}', "line 2: unknown label 'scared'"),
        ("[1, 2]", "line 2: expected a JSON object"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path, bad, match):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.wav", "label": "sad"}\n' + bad + "\n")
    with pytest.raises(ConfigError, match=match):
        read_manifest(path)


def test_metrics_match_hand_computed_values(manifest):
    y_true = [i.label for i in read_manifest(manifest)]
    y_pred = [p for _, p in ROWS]
    m = compute_metrics(y_true, y_pred, review_flags=FLAGS)
    # correct: items 1, 3, 4, 6, 8, 10
    assert m["accuracy"] == pytest.approx(6 / 10)
    # recalls over true classes: fearful 2/3, disgusted 1/2, angry 1/2, neutral 1/2, happy 1
    assert m["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2 + 1 / 2 + 1) / 5)
    # F1 over true ∪ predicted: fearful 2/3, disgusted 0.4 (P 1/3, R 1/2), angry 2/3,
    # neutral 2/3, happy 1, sad 0 (predicted once, never true)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 2 / 3 + 2 / 3 + 1 + 0) / 6)
    # fear/disgust items 1-5: 1, 3, 4 right
    assert m["pair_accuracy"] == pytest.approx(3 / 5) and m["pair_support"] == 5
    assert m["review_rate"] == pytest.approx(0.2)
    pc = m["per_class"]
    assert pc["disgusted"]["precision"] == pytest.approx(1 / 3)
    assert pc["disgusted"]["recall"] == pytest.approx(1 / 2)
    assert pc["fearful"]["support"] == 3 and pc["sad"]["support"] == 0
    assert pc["sad"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}

    idx = {lab: i for i, lab in enumerate(LABELS)}
    expected = np.zeros((9, 9), dtype=int)
    for t, p in [("fearful", "fearful"), ("fearful", "disgusted"), ("fearful", "fearful"),
                 ("disgusted", "disgusted"), ("disgusted", "fearful"), ("angry", "angry"),
                 ("angry", "disgusted"), ("neutral", "neutral"), ("neutral", "sad"),
                 ("happy", "happy")]:  # fmt: skip
        expected[idx[t], idx[p]] += 1
    np.testing.assert_array_equal(np.array(m["confusion_matrix"]), expected)
    assert m["confusion_matrix"][idx["fearful"]][idx["disgusted"]] == 1  # rows are true
    json.dumps(m)  # JSON-ready


def test_metric_input_errors():
    with pytest.raises(ConfigError, match="2 true labels but 1"):
        compute_metrics(["sad", "sad"], ["sad"])
    with pytest.raises(ConfigError, match="'scared'"):
        compute_metrics(["sad"], ["scared"])
    assert compute_metrics(["sad"], ["sad"])["pair_accuracy"] is None


def test_compare_steps():
    y = ["fearful", "fearful", "disgusted", "disgusted", "sad"]
    rows = compare_steps(
        y,
        {
            "baseline": ["disgusted", "fearful", "fearful", "disgusted", "sad"],
            "+centroids": ["fearful", "fearful", "fearful", "disgusted", "sad"],
            "+context": ["fearful", "fearful", "disgusted", "disgusted", "happy"],
        },
    )
    assert [r["step"] for r in rows] == ["baseline", "+centroids", "+context"]
    assert [r["pair_accuracy"] for r in rows] == pytest.approx([0.5, 0.75, 1.0])
    assert [r["accuracy"] for r in rows] == pytest.approx([0.6, 0.8, 0.8])
    assert rows[0]["delta_vs_previous"] is None
    assert rows[2]["delta_vs_previous"] == pytest.approx(0.25)
    assert rows[2]["delta_vs_baseline"] == pytest.approx(0.5)


def test_write_report_files(tmp_path):
    m = compute_metrics([lab for lab, _ in ROWS_LABELS], [p for _, p in ROWS_LABELS])
    paths = write_report(m, tmp_path / "out")
    assert json.loads(paths["metrics"].read_text())["accuracy"] == pytest.approx(m["accuracy"])
    png = paths["confusion_matrix"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


ROWS_LABELS = [("fearful", "fearful"), ("disgusted", "fearful"), ("sad", "sad"), ("angry", "happy")]


def test_plot_embeddings_tsne(tmp_path):
    rng = np.random.default_rng(0)
    emb = np.vstack([rng.normal(0, 0.1, (8, 6)) + np.eye(6)[0], rng.normal(0, 0.1, (8, 6)) + np.eye(6)[1]])
    out = plot_embeddings(emb, ["fearful"] * 8 + ["disgusted"] * 8, tmp_path / "emb.png", method="tsne")
    assert out.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ConfigError, match="'pca'"):
        plot_embeddings(emb, ["fearful"] * 16, tmp_path / "x.png", method="pca")
