"""Linear layers with their weights prepacked for oneDNN (CPU): the matrix units at their pace.

An eager `F.linear` in bfloat16 on the CPU reorders its weight into oneDNN's blocked layout on
every call; with the short inputs of live chunks (a few hundred rows) that reorder costs about as
much as the product. `torch.ops.mkldnn._reorder_linear_weight` does it once (the same packing
inductor's `freezing` applies), and `torch.ops.mkldnn._linear_pointwise` runs the product on the
packed weight, with AMX on CPUs that have it, and can fuse the GELU after it.

`pack_linears(model)` swaps the transformer's nn.Linear modules for `PackedLinear` in place (the
packed weight is the only copy kept: no second 600 MB for `large`), so funasr's own forward and
ours both run on them. The products are the same oneDNN kernels as the eager path; only the
reorder moved (bfloat16 results equal `F.linear`'s).

`torch.utils.flop_counter` is taught the packed op's FLOPs here, so FLOP counts (the benchmarks')
see packed models as they see plain ones.
"""

from __future__ import annotations

import torch
from torch import nn

ROWS_HINT = 512  # the row count oneDNN picks the packed layout for (any count runs)


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether this torch and device can run prepacked oneDNN linears in `dtype`."""
    if device.type != "cpu" or dtype not in (torch.bfloat16, torch.float32):
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    return hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def pack_weight(weight: torch.Tensor, rows_hint: int = ROWS_HINT) -> torch.Tensor:
    """A (N, K) weight in oneDNN's packed layout (an mkldnn tensor: only `linear` below reads it)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows_hint)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False) -> torch.Tensor:
    """x @ weight.T + bias on a packed weight (any leading dims), GELU fused when asked."""
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def linear_add(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, other: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias + other in one oneDNN call (the residual added in the product's epilogue)."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, packed, bias, "add")


class PackedLinear(nn.Module):
    """An nn.Linear whose weight lives prepacked for oneDNN (inference only)."""

    def __init__(self, source: nn.Linear, gelu: bool = False):
        super().__init__()
        self.in_features, self.out_features = source.in_features, source.out_features
        self.gelu = gelu  # the erf GELU (nn.GELU()) fused after the product
        self.register_buffer("packed", pack_weight(source.weight), persistent=False)
        bias = None if source.bias is None else source.bias.detach().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.packed, self.bias, self.gelu)

    def plus(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """forward(x) + other, the sum fused into the product (one rounding instead of two)."""
        return linear_add(x, self.packed, self.bias, other)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, gelu={self.gelu}, packed"


def pack_linears(module: nn.Module) -> int:
    """Swap every nn.Linear below `module` for a PackedLinear, fusing `Mlp.fc1`'s erf GELU; returns
    how many were packed. The module must already be in its compute dtype and on the CPU."""
    count = 0
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, PackedLinear(child))
            count += 1
        elif _fusable_mlp(child):
            child.fc1 = PackedLinear(child.fc1, gelu=True)
            child.act = nn.Identity()
            child.fc2 = PackedLinear(child.fc2)
            count += 2
        else:
            count += pack_linears(child)
    return count


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; elsewhere nothing).

    Packing frees each plain weight after allocating its packed copy: the freed blocks sit
    between live ones, where glibc keeps them. For `large` in bfloat16 that held ~380 MiB of RSS
    after loading (1.5 GiB instead of the 1.1 GiB of unpacked weights); trimming returns it.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _fusable_mlp(module: nn.Module) -> bool:
    """timm's Mlp (fc1, act, drop1, norm, fc2, drop2) with the erf GELU: fc1 and GELU fuse."""
    act = getattr(module, "act", None)
    return (
        type(getattr(module, "fc1", None)) is nn.Linear
        and type(getattr(module, "fc2", None)) is nn.Linear
        and type(act) is nn.GELU
        and act.approximate == "none"
        and isinstance(getattr(module, "norm", None), nn.Identity)
    )


def _register_flops() -> None:
    """FLOPs of the packed op for torch.utils.flop_counter: 2·rows·K·N, as for aten.addmm."""
    try:
        from torch.utils.flop_counter import register_flop_formula
    except ImportError:  # pragma: no cover (older torch)
        return

    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None:
        return

    @register_flop_formula(op, get_raw=True)
    def _packed_linear_flops(x, w, *args, out_val=None, **kwargs) -> int:  # noqa: ARG001
        rows = x.numel() // x.shape[-1]
        return 2 * rows * x.shape[-1] * w.shape[0]


try:
    _register_flops()
except Exception:  # noqa: BLE001 (counting is for benchmarks; never break loading a model over it)
    pass


__all__ = ["PackedLinear", "can_pack", "linear", "pack_linears", "pack_weight", "release_freed_memory"]
