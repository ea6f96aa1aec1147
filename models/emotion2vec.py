"""emotion2vec+ through funasr: batched per-frame logits and features for many waveforms."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .frames import CONV_LAYERS, n_frames
from .labels import is_unused, token_to_label
from .scoring import FrameOutput, softmax


class Emotion2vecScorer:
    """Runs a funasr-built emotion2vec+ model on batches of 16 kHz waveforms (a `Scorer`)."""

    def __init__(
        self, auto_model, model_id: str, random_weights: bool, dtype: str = "float32", planted: str | None = None
    ):
        """Wrap a loaded `funasr.AutoModel` (use models.loader.load_scorer to build one)."""
        self.auto_model = auto_model
        self._lock = threading.Lock()
        self.model = auto_model.model
        self.model_id = model_id
        self.random_weights = random_weights
        self.planted = planted
        self.device = next(self.model.parameters()).device
        # Lower precision is opt-in: float32 is what funasr runs and what the scores are checked against.
        self.dtype = getattr(torch, dtype)
        tokens = list(auto_model.kwargs["tokenizer"].token_list)
        # funasr masks 'unuse_*' tokens out of the softmax; dropping their logits is equivalent.
        self._used = [i for i, t in enumerate(tokens) if not is_unused(t)]
        self.labels: tuple[str, ...] = tuple(token_to_label(tokens[i]) for i in self._used)
        self.embed_dim: int = self.model.cfg.get("embed_dim")
        encoder = self.model.modality_encoders["AUDIO"]
        spec = tuple((k, s) for _, k, s in encoder.feature_enc_layers)
        if spec != CONV_LAYERS:
            raise ValueError(f"unsupported feature extractor {spec}; expected {CONV_LAYERS}")
        # Per-item batching relies on frame-local normalisation in the conv stack.
        self._batchable = encoder.modality_cfg.extractor_mode == "layer_norm"
        self.model.to(self.dtype)

    def score(self, waveforms: Sequence[np.ndarray]) -> list[FrameOutput]:
        """Score several 16 kHz mono float waveforms (any lengths) in one padded forward pass."""
        # One forward at a time: the live scheduler and HTTP requests share this model.
        with self._lock:
            return self._score(waveforms)

    @torch.inference_mode()
    def _score(self, waveforms: Sequence[np.ndarray]) -> list[FrameOutput]:
        if not waveforms:
            return []
        if not self._batchable and len(waveforms) > 1:
            return [out for w in waveforms for out in self._score([w])]
        lengths = [len(w) for w in waveforms]
        frames = [n_frames(n) for n in lengths]
        if min(frames) == 0:
            raise ValueError(f"each waveform needs at least 400 samples, got {min(lengths)}")
        batch = torch.zeros(len(waveforms), max(lengths), device=self.device)
        for i, w in enumerate(waveforms):
            x = torch.as_tensor(np.asarray(w, dtype=np.float32), device=self.device)
            # funasr normalises each input over its whole length before the encoder.
            batch[i, : len(w)] = F.layer_norm(x, x.shape) if self.model.cfg.normalize else x
        batch = batch.to(self.dtype)
        valid = torch.arange(max(frames), device=self.device)[None, :] < torch.tensor(
            frames, device=self.device
        )[:, None]
        features = self._encode(batch, valid)
        logits = self.model.proj(features)[..., self._used]
        features = features.float().cpu().numpy()
        logits = logits.float().cpu().numpy()
        return [
            FrameOutput(logits=logits[i, : frames[i]], features=features[i, : frames[i]])
            for i in range(len(waveforms))
        ]

    def _encode(self, wav: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The data2vec 2.0 encoder forward of funasr's Emotion2vec, with padding handled.

        funasr's own forward lets padded frames leak into real ones through the convolutional
        positional encoder; zeroing them before each of its layers makes every item of a padded
        batch equal to that item run alone.
        """
        model, enc = self.model, self.model.modality_encoders["AUDIO"]
        x = enc.project_features(enc.local_encoder(wav))[:, : valid.shape[1]]
        x = x + self._positions(enc, x, valid)
        batch, steps = valid.shape
        cfg = enc.modality_cfg
        bias = enc.get_alibi_bias(
            batch_size=batch,
            time_steps=steps,
            heads=cfg.num_alibi_heads,
            dtype=torch.float32,
            device=x.device,
        )
        scale = enc.alibi_scale.clamp_min(0)
        if scale.size(0) == 1:
            bias = bias * scale.squeeze(0).type_as(bias)
            scale = None
        extra = cfg.num_extra_tokens
        if enc.extra_tokens is not None:
            x = torch.cat([enc.extra_tokens.expand(batch, -1, -1).type_as(x), x], dim=1)
        padding = F.pad(~valid, (extra, 0))
        bias = F.pad(bias, (extra, 0, extra, 0))
        x = enc.context_encoder(x, padding, bias, scale[: cfg.prenet_depth] if scale is not None else None)
        rest = scale[cfg.prenet_depth :] if scale is not None and scale.size(0) > 1 else scale
        for i, block in enumerate(model.blocks):
            ab = bias
            if rest is not None:
                ab = ab * (rest[i] if rest.size(0) > 1 else rest.squeeze(0)).type_as(ab)
            x, _ = block(x, padding_mask=padding, alibi_bias=ab)
        if model.norm is not None:
            x = model.norm(x)
        return x[:, extra:]

    @staticmethod
    def _positions(enc, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Apply the convolutional positional encoder with padded frames zeroed before each layer."""
        encoder = enc.relative_positional_encoder
        if enc.modality_cfg.conv_pos_pre_ln:
            x = encoder[0](x)
            encoder = encoder[1]
        layers = list(encoder)  # TransposeLast, conv blocks..., TransposeLast
        keep = valid[:, None, :].to(x.dtype)
        y = layers[0](x)
        for layer in layers[1:-1]:
            y = layer(y * keep)
        return layers[-1](y)

    def utterance_scores(self, output: FrameOutput) -> np.ndarray:
        """Softmax over the labels of the mean frame logits: funasr's utterance score."""
        return softmax(output.logits.mean(axis=0))


__all__ = ["Emotion2vecScorer"]
