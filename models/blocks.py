"""funasr's AltBlock with its attention in one fused SDPA kernel, and the transformer trunk as one
module (what `torch.compile` takes when the scorer is asked to compile: `--compile`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(bias: torch.Tensor, padding: torch.Tensor, heads: int, dtype: torch.dtype) -> torch.Tensor:
    """funasr's ALiBi bias and key padding as one additive SDPA mask (B, heads, S, S).

    funasr adds the bias to its first heads only. The bias keeps its dtype (float32 on the CPU,
    the compute dtype on CUDA); padded keys get -inf.
    """
    if bias.size(1) < heads:
        bias = F.pad(bias, (0, 0, 0, 0, 0, heads - bias.size(1)))
    b, n = padding.shape
    keys = torch.zeros(b, 1, 1, n, dtype=dtype, device=padding.device).masked_fill_(padding[:, None, None, :], float("-inf"))
    return bias + keys


def block_sdpa(block, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """funasr's AltBlock forward with its attention in one fused scaled_dot_product_attention
    (`mask`: `attention_mask`'s bias and key padding)."""
    attn = block.attn
    b, n, c = x.shape
    heads = attn.num_heads

    def attention(h: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = attn.qkv(h).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
        return _plus(attn.proj, out.transpose(1, 2).reshape(b, n, c), residual)

    if block.layer_norm_first:
        x = attention(block.norm1(x), residual=x)
        r = block.mlp(block.norm2(x))
        return r + block.post_mlp_dropout(r)  # funasr's own residual here
    x = attention(x, residual=x)
    r = block.norm1(x)
    mlp = block.mlp
    if hasattr(mlp.fc2, "plus") and isinstance(mlp.drop1, nn.Dropout) and isinstance(mlp.norm, nn.Identity):
        return block.norm2(mlp.fc2.plus(mlp.act(mlp.fc1(r)), r))  # eval: the dropouts are identities
    return block.norm2(r + mlp(r))


def _plus(linear, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    """linear(x) + residual: fused into the product where the layer is packed (models/packed.py)."""
    if residual is None:
        return linear(x)
    if hasattr(linear, "plus"):
        return linear.plus(x, residual)
    return residual + linear(x)


class Trunk(nn.Module):
    """The audio encoder's own blocks (with its norm) and the model's blocks (with its norm), every
    block reading one attention mask: the part of the forward `torch.compile` takes.

    Only for models whose blocks all share one ALiBi bias (emotion2vec+: one learned scale for
    every layer); `fits` says whether a model is one.
    """

    def __init__(self, context_encoder, blocks, norm):
        super().__init__()
        self.context_encoder, self.blocks, self.norm = context_encoder, blocks, norm

    @staticmethod
    def fits(model) -> bool:
        enc = model.modality_encoders["AUDIO"]
        every = list(enc.context_encoder.blocks) + list(model.blocks)
        return enc.alibi_scale.size(0) == 1 and not any(b.attn.cosine_attention for b in every)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        enc = self.context_encoder
        if enc.norm is not None and not enc.layer_norm_first:
            x = enc.norm(x)
        for block in enc.blocks:
            x = block_sdpa(block, x, mask)
        if enc.norm is not None and enc.layer_norm_first:
            x = enc.norm(x)
        for block in self.blocks:
            x = block_sdpa(block, x, mask)
        return self.norm(x) if self.norm is not None else x


__all__ = ["Trunk", "attention_mask", "block_sdpa"]
