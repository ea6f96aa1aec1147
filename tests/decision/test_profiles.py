"""Domain profiles: keyword selection, the exact prior shift, bias estimation, the shipped YAML."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ConfigError
from models.labels import LABELS
from stream.decision.profiles import (
    DEFAULT_LIBRARY_PATH,
    Profile,
    ProfileLibrary,
    estimate_bias,
    load_library,
    save_library,
    select_profile,
    softmax,
)

K = len(LABELS)


@pytest.fixture
def library():
    return ProfileLibrary(
        profiles=(
            Profile("medical", ("doctor", "hospital", "医疗")),
            Profile("customer_service", ("customer", "complaint")),
            Profile("crisis_hotline", ("crisis", "hotline", "doctor")),
            Profile("general"),
        )
    )


def test_shipped_library_loads_and_is_neutral():
    lib = load_library()
    assert lib.default == "general"
    assert {"crisis_hotline", "medical", "customer_service", "education", "general"} <= set(lib.names)
    for p in lib.profiles:
        assert p.is_neutral, p.name
        assert set(p.logit_bias) == set(LABELS)
    assert load_library(DEFAULT_LIBRARY_PATH) == lib
    assert select_profile("医疗咨询", lib).name == "medical"
    assert select_profile("Medical consultation", lib).name == "medical"


def test_profile_shifts_scores_by_exactly_its_bias():
    bias = {"disgusted": np.log(2.0), "fearful": -np.log(2.0)}
    p = Profile("medical", logit_bias=bias)
    logits = np.zeros((3, K))  # uniform: every label 1/9
    shifted = logits + p.bias_vector(LABELS)  # what the engine and `analyze` add to every frame's logits
    np.testing.assert_array_equal(shifted - logits, np.broadcast_to(p.bias_vector(), (3, K)))
    # weights 1 for seven labels, 2 for disgusted, 1/2 for fearful: total 9.5
    expected = np.full(K, 1.0 / 9.5)
    expected[LABELS.index("disgusted")] = 2.0 / 9.5
    expected[LABELS.index("fearful")] = 0.5 / 9.5
    np.testing.assert_allclose(softmax(shifted)[1], expected, atol=1e-12)


def test_unknown_label_in_bias_is_refused():
    with pytest.raises(ConfigError, match="unknown labels"):
        Profile("x", logit_bias={"scared": 1.0})


def test_keyword_selection_precedence_and_default(library):
    assert select_profile(None, library).name == "general"
    assert select_profile("   ", library).name == "general"
    assert select_profile("a quiet afternoon", library).name == "general"
    assert select_profile("CUSTOMER complaint line", library).name == "customer_service"
    assert select_profile("医疗", library).name == "medical"
    # "doctor" matches medical and crisis_hotline once each: the earlier one wins the tie
    assert select_profile("talk to a doctor", library).name == "medical"
    # two crisis keywords beat one medical keyword
    assert select_profile("crisis hotline, asked for a doctor", library).name == "crisis_hotline"
    # a context equal to a profile name selects it
    assert select_profile("Crisis_Hotline", library).name == "crisis_hotline"


def test_estimate_bias_recovers_log_prior_ratio():
    # uniform logits: the model predicts 1/9 for every label; the domain has skewed labels
    counts = {"fearful": 40, "disgusted": 20, "neutral": 30, "sad": 10}
    labels = [lab for lab, n in counts.items() for _ in range(n)]
    n = len(labels)
    bias = estimate_bias(np.zeros((n, K)), labels)
    ref = (n / K + 1) / (n + K)
    for lab in LABELS:
        assert bias[lab] == pytest.approx(np.log((counts.get(lab, 0) + 1) / (n + K)) - np.log(ref))
    # with a given reference prior the formula uses it as is
    bias = estimate_bias(np.zeros((n, K)), labels, reference_prior=np.full(K, 1 / K))
    assert bias["fearful"] == pytest.approx(np.log(41 / (n + K)) - np.log(1 / K))


def test_estimated_bias_corrects_a_prior_shift():
    # logits encode a uniform-prior posterior; the domain's true prior favours fear 3:1 over disgust
    rng = np.random.default_rng(0)
    labels = ["fearful"] * 300 + ["disgusted"] * 100
    logits = np.zeros((400, K))
    logits[:, LABELS.index("fearful")] = rng.normal(2.0, 0.1, 400)
    logits[:, LABELS.index("disgusted")] = rng.normal(2.0, 0.1, 400)
    bias = estimate_bias(logits, labels)
    assert bias["fearful"] > 0 > bias["disgusted"]
    p = Profile("d", logit_bias=bias)
    after = softmax(logits + p.bias_vector(LABELS)).mean(axis=0)
    assert after[LABELS.index("fearful")] / after[LABELS.index("disgusted")] == pytest.approx(3.0, rel=0.02)


def test_save_load_round_trip(tmp_path, library):
    lib = ProfileLibrary(
        profiles=library.profiles[:3] + (Profile("general", (), {"sad": 0.25}, "d"),), default="general"
    )
    back = load_library(save_library(lib, tmp_path / "p.yaml"))
    assert back.names == lib.names
    assert back["general"].bias_vector()[LABELS.index("sad")] == 0.25
    assert back["medical"].keywords == ("doctor", "hospital", "医疗")


def test_bad_library_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: nope\nprofiles:\n  general: {keywords: []}\n")
    with pytest.raises(ConfigError, match="default profile 'nope'"):
        load_library(bad)
    bad.write_text("profiles:\n  general: {keyword: []}\n")
    with pytest.raises(ConfigError, match="unknown fields"):
        load_library(bad)
