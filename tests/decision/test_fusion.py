"""Centroid fusion: centres from labelled embeddings, the fusion rule, the .npz cache."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ConfigError
from models.labels import LABELS
from stream.decision.fusion import Centroids, FusionConfig, compute_centroids, fuse, kmeans_view


def scores_with(fear: float, disgust: float, **others) -> dict:
    """Nine scores: fear and disgust as given, the rest spread evenly (or as given)."""
    rest = [k for k in LABELS if k not in ("fearful", "disgusted") and k not in others]
    left = 1.0 - fear - disgust - sum(others.values())
    s = {k: left / len(rest) for k in rest}
    s.update(others, fearful=fear, disgusted=disgust)
    return s


@pytest.fixture
def axes():
    """Fear centre along x, disgust centre along y (2-D, exact)."""
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
    return compute_centroids(emb, ["fearful", "fearful", "disgusted", "neutral"], model_id="m")


def test_centroids_are_means_of_normalised_embeddings():
    emb = np.array([[3.0, 4.0], [10.0, 0.0], [0.0, 2.0], [7.0, 7.0]])
    c = compute_centroids(emb, ["fearful", "fearful", "disgusted", "happy"], model_id="m")
    np.testing.assert_allclose(c.fear, [(0.6 + 1.0) / 2, (0.8 + 0.0) / 2], atol=1e-7)
    np.testing.assert_allclose(c.disgust, [0.0, 1.0], atol=1e-7)
    assert c.counts == {"fearful": 2, "disgusted": 1}
    assert (c.dim, c.method, c.model_id) == (2, "labelled", "m")


def test_missing_class_is_an_error():
    with pytest.raises(ConfigError, match="disgusted"):
        compute_centroids(np.eye(2), ["fearful", "neutral"], model_id="m")


def test_exact_fused_numbers_and_flip_toward_nearer_centre(axes):
    # embedding (3, 4): cosine 0.6 to the fear axis, 0.8 to the disgust axis
    r = fuse(scores_with(0.45, 0.40), np.array([3.0, 4.0]), axes)
    assert r.emotion_before == "fearful"
    assert r.enhanced
    assert r.fear_similarity == pytest.approx(0.6)
    assert r.disgust_similarity == pytest.approx(0.8)
    assert r.fused_fear == pytest.approx(0.6 * 0.45 + 0.4 * 0.6)  # 0.51
    assert r.fused_disgust == pytest.approx(0.6 * 0.40 + 0.4 * 0.8)  # 0.56
    assert r.gap == pytest.approx(0.05)
    assert r.emotion == "disgusted"
    d = r.to_dict()
    assert d["emotion"] == "disgusted" and d["fused_disgust"] == pytest.approx(0.56)
    assert d["scores"] == r.scores  # the nine scores are untouched


def test_close_call_kept_when_embedding_is_nearer_its_own_centre(axes):
    r = fuse(scores_with(0.40, 0.45), np.array([1.0, 0.1]), axes)
    assert r.enhanced and r.emotion_before == "disgusted" and r.emotion == "fearful"
    r = fuse(scores_with(0.40, 0.45), np.array([0.1, 1.0]), axes)
    assert r.enhanced and r.emotion == "disgusted"


def test_clear_call_is_not_touched(axes):
    r = fuse(scores_with(0.60, 0.48), np.array([0.0, 1.0]), axes)  # gap 0.12 == close_gap
    assert not r.enhanced and r.emotion == "fearful"
    assert r.fused_fear is None and r.fear_similarity is None


def test_other_leader_is_kept_and_disabled_does_nothing(axes):
    s = scores_with(0.10, 0.12, neutral=0.70)
    r = fuse(s, np.array([1.0, 0.0]), axes)
    assert r.emotion == "neutral" and not r.enhanced and r.fused_fear is not None
    r = fuse(scores_with(0.45, 0.40), np.array([0.0, 1.0]), axes, FusionConfig(enabled=False))
    assert r.emotion == "fearful" and not r.enhanced


def test_dimension_mismatch_is_an_error(axes):
    with pytest.raises(ConfigError, match="dimension 3"):
        fuse(scores_with(0.45, 0.40), np.ones(3), axes)


def test_save_load_round_trip(tmp_path, axes):
    path = axes.save(tmp_path / "cache" / "centres.npz")
    assert path.exists()
    back = Centroids.load(path, expect_model_id="m", expect_dim=2)
    np.testing.assert_array_equal(back.fear, axes.fear)
    np.testing.assert_array_equal(back.disgust, axes.disgust)
    assert (back.counts, back.model_id, back.dim, back.created, back.method) == (
        axes.counts, axes.model_id, axes.dim, axes.created, axes.method
    )


def test_load_refuses_other_model_or_dimension(tmp_path, axes):
    path = axes.save(tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="'m'.*'iic/emotion2vec_plus_large'"):
        Centroids.load(path, expect_model_id="iic/emotion2vec_plus_large")
    with pytest.raises(ConfigError, match="dimension 2.*dimension 1024"):
        Centroids.load(path, expect_dim=1024)


def test_kmeans_view_separates_two_clusters():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0, 0.0]) + 0.05 * rng.standard_normal((20, 4))
    b = np.array([0.0, 0.0, 1.0, 0.0]) + 0.05 * rng.standard_normal((20, 4))
    centres, assign = kmeans_view(np.vstack([a, b]) * 7.0, k=2, seed=0)  # scale must not matter
    assert centres.shape == (2, 4)
    assert len(set(assign[:20])) == 1 and len(set(assign[20:])) == 1
    assert assign[0] != assign[20]
