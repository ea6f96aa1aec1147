"""emotion2vec+'s convolutional front end, time-major throughout: no transposes, no layout copies.

funasr runs the waveform feature extractor channel-major ([B, 512, T]) and normalises each conv
layer's output over its channels by transposing to [B, T, 512] and back around every layer norm
(and, in half precision, casting the whole tensor to float32 and back around it): on `large` in
bfloat16 those copies took 28 % of a forward on the CPU, 40 % of GPU time. Here every tensor is
[B, T, C] from the waveform on:

- each conv layer is one matmul over its input frames: for kernel k and stride s the rows are
  the k·C values under each output frame, a reshape when k == s and a strided gather (k/s times
  the input) otherwise, times the kernel as a (k·C, C_out) matrix. The contraction is the
  convolution's, in another summation order (float32 within ~1e-5 of funasr's);
- its layer norm is over the last, contiguous dimension, computed in float32 and rounded once
  to the compute dtype (funasr's Fp32LayerNorm), or on CUDA in the compute dtype, whose kernels
  accumulate in float32 anyway;
- `project_features` (layer norm, linear: funasr's modules) follows on the same layout;
- the convolutional positional encoder runs as a grouped 2-D convolution on a channels-last view
  of [B, T, C] (no copy in, none out), its layer norms again over the last dimension.

Everything is read from funasr's modules at each call (packed conv kernels excepted, copied once
into matmul form), so the model stays funasr's model and its own forward still works.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
import torch.nn.functional as F

from .frames import CONV_LAYERS

# x (rows..., K) -> (rows..., N): the matmul the scorer uses (plain F.linear, or prepacked on the CPU)
Linear = Callable[[torch.Tensor], torch.Tensor]


class FrontEnd:
    """Waveform (B, L) in the compute dtype -> projected frame features (B, T, embed_dim)."""

    def __init__(self, encoder, dtype: torch.dtype, device: torch.device,
                 make_linear: Callable[[torch.Tensor, torch.Tensor | None], Linear] | None = None):
        """Take the conv stack, its norms and the projection from funasr's AudioEncoder `encoder`.

        `make_linear(weight (N, K), bias)`, when given, builds each conv layer's matmul once (the
        CPU's packed weights); without it each forward takes the kernel from the conv module
        (a small copy into matmul form), so the front end follows the module wherever it moves.
        """
        self.encoder = encoder
        self.dtype = dtype
        # Norms in float32 with one rounding (funasr's Fp32LayerNorm): on the CPU its layer norm
        # takes float32 weights with bfloat16 input and returns bfloat16 in one pass. CUDA's
        # half-precision layer norm computes in float32 inside and rounds once as well.
        self.mixed_norm = device.type == "cpu" and dtype != torch.float32
        self.layers: list[tuple[int, int, torch.nn.Module, torch.nn.Module, Linear | None]] = []
        for block, (kernel, stride) in zip(encoder.local_encoder.conv_layers, CONV_LAYERS):
            conv, norm = block[0], block[2][1]
            if conv.kernel_size[0] != kernel or conv.stride[0] != stride or conv.bias is not None:
                raise ValueError(f"unexpected conv layer {conv}")
            built = make_linear(kernel_matrix(conv.weight.detach()), None) if make_linear else None
            self.layers.append((kernel, stride, conv, norm, built))

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        batch = wav.shape[0]
        x = wav[:, :, None]  # (B, L, 1)
        for kernel, stride, conv, norm, built in self.layers:
            steps = (x.shape[1] - kernel) // stride + 1
            rows = frames(x, kernel, stride, steps).reshape(batch * steps, -1)
            x = built(rows) if built is not None else F.linear(rows, kernel_matrix(conv.weight))
            x = F.gelu(self._norm(x, norm)).view(batch, steps, -1)
        project = self.encoder.project_features  # TransposeLast (not needed here), LayerNorm, Linear
        return project[2](project[1](x))

    def _norm(self, x: torch.Tensor, norm) -> torch.Tensor:
        weight, bias = norm.weight, norm.bias
        if self.mixed_norm:
            return F.layer_norm(x, norm.normalized_shape, _float(weight), _float(bias), norm.eps)
        return F.layer_norm(x, norm.normalized_shape, _as(weight, x), _as(bias, x), norm.eps)


def kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A Conv1d weight (C_out, C_in, k) as the (C_out, k·C_in) matrix of the tap-major frame rows."""
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)


def frames(x: torch.Tensor, kernel: int, stride: int, steps: int) -> torch.Tensor:
    """(B, L, C) -> (B, steps, kernel·C): the input under each output frame of a strided conv.

    With kernel == stride that is a view; otherwise a strided view that `reshape` gathers.
    """
    batch, _, channels = x.shape
    if kernel == stride:
        return x[:, : steps * stride].reshape(batch, steps, kernel * channels)
    x = x.contiguous()
    return x.as_strided((batch, steps, kernel, channels), (x.stride(0), stride * channels, channels, 1))


def positions(encoder, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """funasr's convolutional positional encoder on (B, T, C), padded frames zeroed before each layer.

    `keep` (B, T, 1) is 1 on real frames and 0 on padding. Each conv layer runs as a grouped
    conv2d on the channels-last view (B, C, 1, T) of x, so no layer transposes anything.
    """
    layers = encoder.relative_positional_encoder
    if encoder.modality_cfg.conv_pos_pre_ln:
        x = layers[0](x)
        layers = layers[1]
    y = x
    for layer in list(layers)[1:-1]:  # TransposeLast, [conv, SamePad, T, LayerNorm, T, GELU]..., TransposeLast
        conv, same, _, norm, _, act = layer
        z = (y * keep).permute(0, 2, 1).unsqueeze(2)  # (B, C, 1, T), channels-last strides
        z = F.conv2d(z, _channels_last_kernel(conv), conv.bias, stride=1, padding=(0, conv.padding[0]),
                     groups=conv.groups)
        z = z.squeeze(2).permute(0, 2, 1)  # (B, T', C): the channels-last output, as a view
        if same.remove:
            z = z[:, : -same.remove]
        y = act(F.layer_norm(z, norm.normalized_shape, _as(norm.weight, z), _as(norm.bias, z), norm.eps))
    return y


_KERNELS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _channels_last_kernel(conv: torch.nn.Conv1d) -> torch.Tensor:
    """conv's weight as a channels-last (C_out, C_in/groups, 1, k) kernel, made once per weight
    (a convolution would otherwise convert it on every call)."""
    weight = conv.weight
    key = (weight.device, weight.dtype, weight.data_ptr() if weight.device.type != "meta" else None, weight._version)
    cached = _KERNELS.get(conv)
    if cached is None or cached[0] != key:
        kernel = weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
        _KERNELS[conv] = cached = (key, kernel)
    return cached[1]


def _float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def _as(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.to(like.dtype)


__all__ = ["FrontEnd", "frames", "kernel_matrix", "positions"]
