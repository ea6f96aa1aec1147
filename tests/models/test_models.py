"""emotion2vec+ loading and scoring, on the tiny random-weight model loaded like a user's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.errors import ConfigError, ModelUnavailable
from models.frames import n_frames
from models.labels import LABELS
from models.loader import ModelOptions, load_scorer


def test_loader_reads_funasr_directory_and_marks_random_weights(scorer):
    assert scorer.labels == LABELS
    assert scorer.random_weights is True
    assert str(scorer.device) == "cpu"


@pytest.mark.parametrize("seconds", [0.5, 3.0, 7.3])
def test_utterance_scores_match_funasr_generate(scorer, speech, seconds):
    wav = np.concatenate(speech)[: int(seconds * 16000)]
    ours = scorer.score([wav])[0]
    res = scorer.auto_model.generate(wav, granularity="utterance", extract_embedding=True, disable_pbar=True)[0]
    assert [l.split("/")[-1] for l in res["labels"]][:8] == list(LABELS[:8])
    assert np.abs(np.asarray(res["scores"]) - scorer.utterance_scores(ours)).max() <= 1e-4
    # Utterance embedding (D) as funasr exports it: the mean of the frame features.
    assert np.abs(res["feats"] - ours.features.mean(axis=0)).max() <= 1e-4


def test_frame_embedding_matches_funasr(scorer, speech):
    wav = speech[0][:32000]
    ours = scorer.score([wav])[0]
    res = scorer.auto_model.generate(wav, granularity="frame", extract_embedding=True, disable_pbar=True)[0]
    assert res["feats"].shape == ours.features.shape == (n_frames(len(wav)), scorer.embed_dim)
    assert np.abs(res["feats"] - ours.features).max() <= 1e-4


def test_batched_scoring_equals_one_at_a_time(scorer, speech, rng):
    waves = [speech[0][:8000], speech[1], speech[0][3000:40000], (0.1 * rng.standard_normal(12345)).astype(np.float32)]
    batched = scorer.score(waves)
    for wav, out in zip(waves, batched):
        alone = scorer.score([wav])[0]
        assert out.logits.shape == (n_frames(len(wav)), 9)
        np.testing.assert_allclose(out.logits, alone.logits, atol=1e-4)
        np.testing.assert_allclose(out.features, alone.features, atol=1e-4)


def test_too_short_waveform_is_refused(scorer):
    with pytest.raises(ValueError, match="400 samples"):
        scorer.score([np.zeros(399, np.float32)])


def test_missing_model_directory_says_what_is_needed(tmp_path):
    (tmp_path / "config.yaml").write_text("model: Emotion2vec\n")
    with pytest.raises(ModelUnavailable, match="model.pt, tokens.txt"):
        load_scorer(ModelOptions(model_dir=str(tmp_path)))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_scorer(ModelOptions(model_dir=str(tmp_path / "nope")))


@pytest.mark.parametrize("hub,expected", [("ms", "iic/emotion2vec_plus_base"), ("hf", "emotion2vec/emotion2vec_plus_base")])
def test_hub_model_offline_explains_how_to_fetch(hub, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    with pytest.raises(ModelUnavailable) as err:
        load_scorer(ModelOptions(model="base", hub=hub, offline=True))
    message = str(err.value)
    assert expected in message and "--model-dir" in message and "EMOSTREAM_MODEL_DIR" in message
    assert "modelscope download" in message and "hf download" in message


def test_model_dir_from_environment(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("EMOSTREAM_MODEL_DIR", str(tiny_model_dir))
    assert ModelOptions.from_env(device="cpu").model_dir == str(tiny_model_dir)


def test_bad_options_name_allowed_values():
    with pytest.raises(ConfigError, match="seed, base, large"):
        ModelOptions(model="huge")
    with pytest.raises(ConfigError, match="auto, cpu, cuda"):
        ModelOptions(device="tpu")


def test_half_precision_needs_cuda(tiny_model_dir):
    with pytest.raises(ConfigError, match="CUDA"):
        load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="float16"))


def test_bfloat16_scores_stay_close_to_float32(tiny_model_dir, scorer, speech):
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with pytest.raises(ConfigError, match="bfloat16"):
            load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="bfloat16"))
        return
    low = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="bfloat16", threads=2))
    wav = speech[0]
    a, b = scorer.score([wav])[0], low.score([wav])[0]
    assert b.logits.dtype == np.float32 and b.logits.shape == a.logits.shape
    assert np.abs(scorer.utterance_scores(a) - low.utterance_scores(b)).max() < 0.02


# ---- precision: auto, and each precision's deviation from CPU float32 (pinned) -------------------
# Measured on the tiny model over the two espeak utterances (2026-11-29, AVX-512 BF16 CPU):
# bfloat16 utterance scores moved by 3.9e-4 and logits by 0.032; int8 by 8.4e-4 and 0.067.
# The bounds leave about 2.5-4x room for other CPUs' kernels. int8 quantizes activations with one
# scale per batch, so its batch-vs-single difference is of the order of its deviation (0.071).
DEVIATION_BOUNDS = {"bfloat16": (1.5e-3, 0.12), "int8": (2.5e-3, 0.2)}
BATCH_TOLERANCE = {"bfloat16": 0.05, "int8": 0.2}


def test_auto_precision_resolves_per_device(monkeypatch):
    import models.loader as loader

    assert ModelOptions().dtype == "auto"
    assert loader.resolve_dtype("auto", "cuda") == loader.resolve_dtype("auto", "cuda:1") == "float16"
    monkeypatch.setattr(loader, "cpu_has_native_bf16", lambda: True)
    assert loader.resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(loader, "cpu_has_native_bf16", lambda: False)
    assert loader.resolve_dtype("auto", "cpu") == "float32"
    for explicit in ("float32", "bfloat16", "float16", "int8"):
        assert loader.resolve_dtype(explicit, "cpu") == explicit


def test_auto_on_this_cpu_runs_what_the_cpu_has(tiny_model_dir):
    import torch

    auto = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", threads=2, dtype="auto"))
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert auto.precision == ("bfloat16" if native else "float32")
    assert next(auto.model.parameters()).dtype == (torch.bfloat16 if native else torch.float32)


def test_int8_is_cpu_only(tiny_model_dir):
    from models.loader import check_dtype

    with pytest.raises(ConfigError, match="int8"):
        check_dtype("int8", "cuda")
    with pytest.raises(ConfigError, match="--dtype"):
        ModelOptions(dtype="int4")


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_precision_deviation_from_float32_is_bounded(tiny_model_dir, scorer, speech, precision):
    import torch

    if precision == "bfloat16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bfloat16")
    low = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype=precision, threads=2))
    assert low.precision == precision
    if precision == "int8":  # the linear layers really are quantized
        assert any("quantized" in type(m).__module__ for m in low.model.modules())
    max_score, max_logit = 0.0, 0.0
    for wav in speech:
        a, b = scorer.score([wav])[0], low.score([wav])[0]
        assert b.logits.dtype == np.float32 and b.features.dtype == np.float32 and b.logits.shape == a.logits.shape
        max_score = max(max_score, float(np.abs(scorer.utterance_scores(a) - low.utterance_scores(b)).max()))
        max_logit = max(max_logit, float(np.abs(a.logits - b.logits).max()))
    score_bound, logit_bound = DEVIATION_BOUNDS[precision]
    assert 0 < max_score <= score_bound and max_logit <= logit_bound, (max_score, max_logit)
    print(f"{precision}: max utterance-score deviation {max_score:.2e}, max logit deviation {max_logit:.3f}")
    # Batch equals single within a few units of bf16's last place (2^-7 at logit ~1); see int8 above.
    both = low.score(list(speech))
    for wav, out in zip(speech, both):
        np.testing.assert_allclose(out.logits, low.score([wav])[0].logits, atol=BATCH_TOLERANCE[precision])


def test_fused_attention_path_equals_funasr_attention(scorer, speech):
    """The CUDA path (SDPA with the ALiBi bias and padding as one additive mask), checked on the CPU."""
    waves = [speech[0], speech[1][:20000]]
    reference = scorer.score(waves)
    scorer.fused_attention = True
    try:
        fused = scorer.score(waves)
    finally:
        scorer.fused_attention = False
    for a, b in zip(reference, fused):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        np.testing.assert_allclose(a.features, b.features, atol=1e-5)


def test_alibi_bias_is_built_once_per_length(scorer, speech):
    scorer._biases.clear()
    first = scorer.score([speech[0]])[0]
    cached = dict(scorer._biases)
    again = scorer.score([speech[0], speech[0]])[0]
    assert len(cached) == 1 and scorer._biases.keys() == cached.keys()
    np.testing.assert_array_equal(first.logits, again.logits)


def test_batched_row_normalisation_equals_layer_norm_per_row(rng):
    """The CUDA input path normalises all rows at once; checked here against funasr's per-row layer norm."""
    import torch
    import torch.nn.functional as F

    from models.emotion2vec import normalize_rows

    lengths = [16000, 9000, 401]
    batch = torch.zeros(3, max(lengths))
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.as_tensor(rng.normal(0.01 * i, 0.1 + i, n), dtype=torch.float32)
    got = normalize_rows(batch, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        torch.testing.assert_close(got[i, :n], F.layer_norm(batch[i, :n], (n,)), atol=1e-5, rtol=1e-5)
        assert not got[i, n:].any()


def test_time_major_front_end_equals_funasr_conv_stack(tiny_model_dir, speech):
    """The conv front end without transposes (models/frontend.py) computes funasr's local encoder
    and feature projection, also with non-trivial norm weights (the saved ones are 1 and 0)."""
    import torch

    model = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="float32", threads=2))
    enc = model.model.modality_encoders["AUDIO"]
    norms = [block[2][1] for block in enc.local_encoder.conv_layers]
    with torch.no_grad():  # weights a lost or misplaced affine part would show
        for m in norms + [enc.project_features[1]]:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    wav = torch.zeros(2, 40_080)
    for i, w in enumerate(speech):
        n = min(len(w), wav.shape[1])
        wav[i, :n] = torch.as_tensor(w[:n])
    with torch.inference_mode():
        ours = model.frontend(wav)
        theirs = enc.project_features(enc.local_encoder(wav))
    assert ours.shape == theirs.shape == (2, n_frames(40_080), model.embed_dim) and ours.is_contiguous()
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)


def test_time_major_positions_equal_funasr_positional_encoder(scorer, rng):
    """The positional encoder on channels-last views equals funasr's transposing one (no padding)."""
    import torch

    from models.frontend import positions

    enc = scorer.model.modality_encoders["AUDIO"]
    x = torch.as_tensor(rng.normal(0, 1, (2, 57, scorer.embed_dim)), dtype=torch.float32)
    with torch.inference_mode():
        ours = positions(enc, x, torch.ones(2, 57, 1))
        theirs = enc.relative_positional_encoder(x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_bfloat16_front_end_has_no_layout_copies(tiny_model_dir, speech):
    """funasr's conv stack transposes around each layer norm (and casts to float32 and back in half
    precision); the scorer's front end copies only the strided frame rows of its k=3 layers."""
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bfloat16")
    low = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="bfloat16", threads=2))
    wav = torch.as_tensor(speech[0][None, :48_080]).to(torch.bfloat16)

    def large_copies(fn) -> list:
        with torch.inference_mode(), torch.profiler.profile(record_shapes=True) as prof:
            fn()
        return [e.input_shapes[0] for e in prof.events()
                if e.name == "aten::copy_" and e.input_shapes and math.prod(e.input_shapes[0]) >= 10_000]

    enc = low.model.modality_encoders["AUDIO"]
    ours = large_copies(lambda: low.frontend(wav))
    # only the frame rows of the first layer (10 taps at stride 5) and the four k=3, s=2 layers
    channels = enc.local_encoder.conv_layers[1][0].in_channels
    assert [shape[-1] for shape in ours] == [10] + [3 * channels] * 4, ours
    assert len(large_copies(lambda: enc.project_features(enc.local_encoder(wav)))) >= 20  # what it replaces


def test_packed_linears_equal_plain_ones_and_keep_funasr_forward(tiny_model_dir, speech):
    """bfloat16 on the CPU packs the transformer's weights for oneDNN once (models/packed.py): the
    same kernels as the eager F.linear, so the same frames; funasr's own block forward runs on them."""
    import torch

    from models.emotion2vec import Emotion2vecScorer
    from models.packed import PackedLinear

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bfloat16")
    packed = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="bfloat16", threads=2))
    assert packed.packed and any(isinstance(m, PackedLinear) and m.gelu for m in packed.model.modules())
    assert not any(type(m) is torch.nn.Linear for m in packed.model.blocks.modules())
    plain = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="float32", threads=2))
    plain = Emotion2vecScorer(plain.auto_model, "tiny", True, dtype="bfloat16", packed=False)
    assert not plain.packed
    for a, b in zip(packed.score(list(speech)), plain.score(list(speech))):
        np.testing.assert_allclose(a.logits, b.logits, atol=0.02)  # a few bf16 ulps: GELU fused vs apart
    x = torch.randn(2, 30, packed.embed_dim).to(torch.bfloat16)  # funasr's own block forward on packed modules
    with torch.inference_mode():
        ours, theirs = packed.model.blocks[0](x)[0], plain.model.blocks[0](x)[0]
    torch.testing.assert_close(ours.float(), theirs.float(), atol=0.05, rtol=0.02)


def test_compiled_trunk_equals_eager(tiny_model_dir, speech):
    """--compile (torch.compile of the transformer, dynamic shapes) gives funasr's float32 frames."""
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("inductor needs a C++ compiler")
    eager = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="float32", threads=2))
    compiled = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="float32", threads=2,
                                        compile=True))
    assert compiled.compiled and compiled.warm_up(24_080) > 0
    waves = [speech[0], speech[1][:20_000]]  # a padded batch, then each alone: lengths the warm-up never ran
    for batch in (waves, waves[:1], waves[1:]):
        for a, b in zip(eager.score(batch), compiled.score(batch)):
            np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
            np.testing.assert_allclose(a.features, b.features, atol=1e-4)
