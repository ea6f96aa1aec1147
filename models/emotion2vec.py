"""emotion2vec+ through funasr: batched per-frame logits and features for many waveforms."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .blocks import Trunk, attention_mask, block_sdpa
from .cuda_graphs import GraphedForward, frames_of
from .frames import CONV_LAYERS, n_frames
from .frontend import FrontEnd, positions
from .packed import can_pack, linear, pack_linears, pack_weight, release_freed_memory
from .labels import is_unused, token_to_label
from .scoring import FrameOutput, softmax

PRECISIONS = ("float32", "bfloat16", "float16", "int8")
BIAS_CACHE_LENGTHS = 32  # distinct chunk lengths whose ALiBi biases are kept

log = logging.getLogger(__name__)


class Emotion2vecScorer:
    """Runs a funasr-built emotion2vec+ model on batches of 16 kHz waveforms (a `Scorer`)."""

    def __init__(
        self, auto_model, model_id: str, random_weights: bool, dtype: str = "float32", planted: str | None = None,
        cuda_graphs: bool = True, packed: bool | None = None, compile: bool = False,
    ):
        """Wrap a loaded `funasr.AutoModel` (use models.loader.load_scorer to build one).

        `packed`: run the linear layers on weights prepacked for oneDNN (models/packed.py); None
        = where it pays (the CPU in bfloat16). float32 keeps funasr's own linear layers.
        `compile`: run the transformer through torch.compile (inductor, weights frozen and packed
        by it; CPU only, see `compile_trunk`): compiled at `prepare` or on the first forward.
        """
        self.auto_model = auto_model
        self._lock = threading.Lock()
        self.model = auto_model.model
        self.model_id = model_id
        self.random_weights = random_weights
        self.planted = planted
        self.device = next(self.model.parameters()).device
        # What the forward computes in (loader.resolve_dtype picks it): float32 is funasr's own
        # arithmetic, the one the scores are checked against; int8 keeps float32 activations.
        if dtype not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {dtype!r}")
        precision = dtype
        self.precision = precision
        self.dtype = torch.float32 if precision == "int8" else getattr(torch, precision)
        tokens = list(auto_model.kwargs["tokenizer"].token_list)
        # funasr masks 'unuse_*' tokens out of the softmax; dropping their logits is equivalent.
        self._used = [i for i, t in enumerate(tokens) if not is_unused(t)]
        self.labels: tuple[str, ...] = tuple(token_to_label(tokens[i]) for i in self._used)
        self._used_index = torch.tensor(self._used, device=self.device)  # made once: a capture may not copy from the host
        self.embed_dim: int = self.model.cfg.get("embed_dim")
        encoder = self.model.modality_encoders["AUDIO"]
        spec = tuple((k, s) for _, k, s in encoder.feature_enc_layers)
        if spec != CONV_LAYERS:
            raise ValueError(f"unsupported feature extractor {spec}; expected {CONV_LAYERS}")
        # Per-item batching relies on frame-local normalisation in the conv stack.
        self._batchable = encoder.modality_cfg.extractor_mode == "layer_norm"
        self._cuda = self.device.type == "cuda"
        # Attention through one fused SDPA kernel: on CUDA, and on the CPU in half precision (its
        # flash kernel adds the float32 ALiBi mask to float32 scores: closer to float32 than
        # funasr's half-precision scores, and 3x faster). CPU float32 keeps funasr's attention
        # (the tests turn SDPA on there to check it against it).
        self.fused_attention = self._cuda or self.dtype != torch.float32
        self.cuda_graphs = cuda_graphs and self._cuda  # captured by `prepare` (the server calls it at start-up)
        self.graphs: GraphedForward | None = None
        # ALiBi biases per (frames, dtype), least recently used last out (see `_alibi`).
        self._biases: OrderedDict[tuple[int, torch.dtype], tuple[torch.Tensor, list[torch.Tensor] | None]] = OrderedDict()
        if precision == "int8":
            # Dynamic quantization: int8 weights, activations quantized per batch; the rest stays float32.
            self.model.float()
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            self.model.to(self.dtype)
        encoder = self.model.modality_encoders["AUDIO"]  # (quantize_dynamic returns a copy)
        if packed is None:
            packed = self.dtype == torch.bfloat16
        self.packed = bool(packed) and precision != "int8" and can_pack(self.device, self.dtype)
        # The conv front end and positional encoder without transposes (models/frontend.py), on
        # every device; its matmuls on packed weights where the transformer's are.
        self.frontend = FrontEnd(encoder, self.dtype, self.device, make_linear=_packed_linear if self.packed else None)
        # torch.compile'd transformer (CPU, opt-in): inductor freezes and packs its weights itself.
        self.compiled = bool(compile) and not self._cuda and precision != "int8" and Trunk.fits(self.model)
        if compile and not self.compiled:
            log.warning("--compile applies to CPU float32/bfloat16 models only; running eagerly")
        self._trunk = compile_trunk(self.model) if self.compiled else None
        if self.packed:
            parts = (encoder.project_features,) if self.compiled else (
                encoder.project_features, encoder.context_encoder, self.model.blocks)
            for part in parts:
                pack_linears(part)
            release_freed_memory()
        if self._cuda:
            # fp32 on CUDA means fp32: TF32 matmuls would move scores by ~1e-3, 10× the equality tolerance.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

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
        if self._cuda:
            return self._copy_back(*self._forward_cuda(waveforms, lengths), frames)
        batch = self._batch(waveforms, lengths)
        valid = torch.arange(max(frames))[None, :] < torch.tensor(frames)[:, None]
        features = self._encode(batch, valid)
        logits = self.model.proj(features)[..., self._used]
        features = features.float().cpu().numpy()
        logits = logits.float().cpu().numpy()
        return [
            FrameOutput(logits=logits[i, : frames[i]], features=features[i, : frames[i]])
            for i in range(len(waveforms))
        ]

    def prepare(self, max_batch: int, max_samples: int, capture_now: bool = True) -> None:
        """Capture CUDA graphs for batches up to `max_batch` waveforms of up to `max_samples` (CUDA only).

        The live server calls it before it accepts streams, with its chunk length; batches that
        fit then replay a graph instead of launching the forward's kernels one by one.
        `capture_now=False` captures each bucket when a batch first needs it (benchmarks).
        """
        if self.compiled and capture_now:
            self.warm_up(max_samples)
        if not self.cuda_graphs:
            return
        with self._lock, torch.inference_mode():
            # A graph reads its length's cached ALiBi biases: it keeps them, whatever the cache evicts.
            biases = lambda samples: self._biases.get((n_frames(samples), self.dtype))  # noqa: E731
            self.graphs = GraphedForward(self._device_forward, self.device, max_batch, max_samples, keep=biases)
            if capture_now:
                ready = self.graphs.prepare()
                log.info("CUDA graphs ready: %d buckets up to %d waveforms x %d samples",
                         ready, self.graphs.max_batch, self.graphs.max_samples)  # fmt: skip

    def warm_up(self, samples: int) -> float:
        """Compile the torch.compile'd trunk now for batches of one and of several (`samples`
        long; other lengths and batch sizes reuse those two dynamic-shape graphs); returns the
        seconds it took (much less when inductor's cache holds them: `compile_trunk`)."""
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        for rows in (1, 2):
            self.score([rng.normal(0.0, 0.1, samples).astype(np.float32) for _ in range(rows)])
        took = time.perf_counter() - start
        log.info("compiled model ready in %.1f s", took)
        return took

    @property
    def cuda_graphs_ready(self) -> int:
        """How many captured forwards serve batches now (0: every forward launches its kernels)."""
        return self.graphs.ready if self.graphs is not None else 0

    def _forward_cuda(self, waveforms: Sequence[np.ndarray], lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) on the GPU, through a captured graph when the batch fits a bucket.

        The batch is staged in one pinned host buffer and sent in one non-blocking copy; padded
        up to its graph's bucket, the extra rows are silence (whole-length, so none is empty).
        """
        bucket = self.graphs.bucket(len(waveforms), max(lengths)) if self.graphs else None
        rows, samples = bucket or (len(waveforms), max(lengths))
        host = torch.zeros(rows, samples, pin_memory=True)
        for i, w in enumerate(waveforms):
            host[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        sizes = torch.full((rows,), samples, dtype=torch.int64, pin_memory=True)
        sizes[: len(lengths)] = torch.tensor(lengths)
        if bucket and (out := self.graphs(host, sizes)) is not None:
            return out
        return self._device_forward(host.to(self.device, non_blocking=True), sizes.to(self.device, non_blocking=True))

    def _device_forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise, encode and project a (B, samples) float32 batch on the GPU: (features, logits).

        Everything per batch comes from the two tensors (no host values, no sync), so a CUDA
        graph can capture it.
        """
        if self.model.cfg.normalize:
            wav = normalize_rows(wav, lengths)
        valid = torch.arange(n_frames(wav.shape[1]), device=self.device)[None, :] < frames_of(lengths)[:, None]
        features = self._encode(wav.to(self.dtype), valid)
        return features, self.model.proj(features).index_select(-1, self._used_index)

    def _batch(self, waveforms: Sequence[np.ndarray], lengths: list[int]) -> torch.Tensor:
        """The zero-padded (B, samples) CPU input in the compute dtype, each row normalised as funasr does."""
        batch = torch.zeros(len(waveforms), max(lengths))
        for i, w in enumerate(waveforms):
            x = torch.as_tensor(np.asarray(w, dtype=np.float32))
            # funasr normalises each input over its whole length before the encoder.
            batch[i, : len(w)] = F.layer_norm(x, x.shape) if self.model.cfg.normalize else x
        return batch.to(self.dtype)

    @staticmethod
    def _copy_back(features: torch.Tensor, logits: torch.Tensor, frames: list[int]) -> list[FrameOutput]:
        """GPU results to numpy: only each item's real frames, in one pinned non-blocking transfer."""
        k = logits.shape[-1]
        both = torch.cat([logits, features], dim=-1).float()
        rows = torch.cat([both[i, :n] for i, n in enumerate(frames)])
        host = torch.empty(rows.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(rows, non_blocking=True)
        torch.cuda.current_stream(rows.device).synchronize()
        out, at, start = [], host.numpy(), 0
        for n in frames:
            part = at[start : start + n].copy()  # own memory: the pinned block goes back to torch's cache
            start += n
            out.append(FrameOutput(logits=part[:, :k], features=part[:, k:]))
        return out

    def _encode(self, wav: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The data2vec 2.0 encoder forward of funasr's Emotion2vec, with padding handled.

        funasr's own forward lets padded frames leak into real ones through the convolutional
        positional encoder; zeroing them before each of its layers makes every item of a padded
        batch equal to that item run alone.
        """
        model, enc = self.model, self.model.modality_encoders["AUDIO"]
        x = self.frontend(wav)[:, : valid.shape[1]]
        x = x + positions(enc, x, valid[:, :, None].to(x.dtype))
        batch, steps = valid.shape
        cfg = enc.modality_cfg
        extra = cfg.num_extra_tokens
        if enc.extra_tokens is not None:
            x = torch.cat([enc.extra_tokens.expand(batch, -1, -1).type_as(x), x], dim=1)
        padding = F.pad(~valid, (extra, 0))
        bias, layer_biases = self._alibi(enc, steps)
        scale = enc.alibi_scale.clamp_min(0)
        scale = scale if scale.size(0) > 1 else None
        prenet_scale = scale[: cfg.prenet_depth] if scale is not None else None
        if self._trunk is not None:  # one mask for every block (Trunk.fits), the compiled blocks
            x = self._trunk(x, attention_mask(bias, padding, model.blocks[0].attn.num_heads, x.dtype))
            return x[:, extra:]
        masks: dict[int, tuple] = {}  # one additive SDPA mask per distinct bias, per forward
        x = self._context_encoder(enc.context_encoder, x, padding, bias, prenet_scale, masks)
        for block, ab in zip(model.blocks, layer_biases):
            x = self._block(block, x, padding, ab, masks)
        if model.norm is not None:
            x = model.norm(x)
        return x[:, extra:]

    def _block(
        self, block, x: torch.Tensor, padding: torch.Tensor, bias: torch.Tensor, masks: dict[int, tuple]
    ) -> torch.Tensor:
        """One funasr AltBlock: through one fused SDPA kernel where `fused_attention`, else funasr's own forward."""
        if self.fused_attention and not block.attn.cosine_attention:
            if id(bias) not in masks:  # (the entry keeps `bias` alive: its id names no other tensor meanwhile)
                masks[id(bias)] = (bias, attention_mask(bias, padding, block.attn.num_heads, x.dtype))
            return block_sdpa(block, x, masks[id(bias)][1])
        return block(x, padding_mask=padding, alibi_bias=bias)[0]

    def _context_encoder(
        self, encoder, x: torch.Tensor, padding: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor | None,
        masks: dict[int, tuple],
    ) -> torch.Tensor:
        """funasr's BlockEncoder forward (the audio encoder's own blocks) with `_block` for each block.

        funasr's attention asks `padding_mask.any()`, a host sync a CUDA graph cannot capture;
        `block_sdpa` masks without asking.
        """
        if encoder.norm is not None and not encoder.layer_norm_first:
            x = encoder.norm(x)
        for i, block in enumerate(encoder.blocks):
            ab = bias if scale is None else bias * scale[i if scale.size(0) > 1 else 0].type_as(bias)
            x = self._block(block, x, padding, ab, masks)
        if encoder.norm is not None and encoder.layer_norm_first:
            x = encoder.norm(x)
        return x

    def _alibi(self, enc, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The ALiBi bias for `steps` frames (extra tokens padded in) and each block's scaled copy.

        Shaped (1, heads, S, S) so it broadcasts over the batch, and cached per length (chunk
        lengths are few: full chunks and tails). On the CPU it stays float32 (funasr's attention
        then runs in float32, as it always has) and only the base bias is kept: the per-block
        copies of `large` at a 3 s chunk take 35 MB. On CUDA every block's copy is kept in the
        compute dtype, so attention never round-trips through float32 and no forward rebuilds it.
        """
        dtype = self.dtype if self._cuda else torch.float32
        key = (steps, dtype)
        if key in self._biases:
            self._biases.move_to_end(key)
            bias, layers = self._biases[key]
            return bias, layers if layers is not None else self._scaled(enc, bias)
        cfg = enc.modality_cfg
        bias = enc.get_alibi_bias(
            batch_size=1, time_steps=steps, heads=cfg.num_alibi_heads, dtype=torch.float32, device=self.device
        )
        scale = enc.alibi_scale.clamp_min(0).float()
        if scale.size(0) == 1:
            bias = bias * scale.squeeze(0)
            scale = None
        extra = cfg.num_extra_tokens
        bias = F.pad(bias, (extra, 0, extra, 0))
        layers = self._scaled(enc, bias)
        if len(self._biases) >= BIAS_CACHE_LENGTHS:
            self._biases.popitem(last=False)
        self._biases[key] = (bias.to(dtype), _converted(layers, dtype) if self._cuda else None)
        bias, cached = self._biases[key]
        return bias, cached if cached is not None else layers

    def _scaled(self, enc, bias: torch.Tensor) -> list[torch.Tensor]:
        """Each block's bias: `bias` times its learned ALiBi scale (funasr's arithmetic, float32)."""
        cfg = enc.modality_cfg
        scale = enc.alibi_scale.clamp_min(0).float()
        if scale.size(0) == 1:  # already applied to `bias`
            return [bias] * len(self.model.blocks)
        rest = scale[cfg.prenet_depth :]
        return [bias * (rest[i] if rest.size(0) > 1 else rest.squeeze(0)) for i in range(len(self.model.blocks))]

    def utterance_scores(self, output: FrameOutput) -> np.ndarray:
        """Softmax over the labels of the mean frame logits: funasr's utterance score."""
        return softmax(output.logits.mean(axis=0))


def normalize_rows(batch: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """F.layer_norm of each row over its own first `lengths[i]` samples, padding kept at zero:
    funasr's per-input normalisation in a few batched kernels instead of one per row."""
    mask = torch.arange(batch.shape[1], device=batch.device)[None, :] < lengths[:, None]
    n = lengths[:, None].to(batch.dtype)
    mean = batch.sum(dim=1, keepdim=True) / n  # padding is zero
    centred = (batch - mean) * mask
    var = centred.square().sum(dim=1, keepdim=True) / n
    return centred * torch.rsqrt(var + eps)


def _packed_linear(weight: torch.Tensor, bias: torch.Tensor | None):
    """The front end's conv matmuls on a weight packed once (models/packed.py)."""
    packed = pack_weight(weight)
    return lambda x: linear(x, packed, bias)


def compile_trunk(model):
    """The model's transformer (`Trunk`) through torch.compile: inductor's CPU backend with its
    weights frozen (constant-folded and prepacked for oneDNN) and dynamic batch and length, so
    one graph serves every chunk length (and one more the batch of one). The compiled code is
    cached in inductor's cache directory, by default `~/.cache/emostream/inductor`
    (TORCHINDUCTOR_CACHE_DIR overrides it): a later start with the same model shape, torch and
    CPU loads it instead of compiling."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "emostream" / "inductor"))
    trunk = Trunk(model.modality_encoders["AUDIO"].context_encoder, model.blocks, model.norm).eval()
    return torch.compile(trunk, dynamic=True, options={"freezing": True})


def _converted(layers: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Each block's bias in `dtype`, one tensor per distinct source (blocks sharing a bias share
    its copy, so a forward builds one attention mask for them all)."""
    done: dict[int, torch.Tensor] = {}
    for b in layers:
        if id(b) not in done:
            done[id(b)] = b.to(dtype).contiguous()
    return [done[id(b)] for b in layers]


__all__ = ["Emotion2vecScorer"]
