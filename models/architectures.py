"""emotion2vec+ model sizes: hub ids and the funasr `config.yaml` each checkpoint ships."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .labels import PLUS_TOKENS

SIZES = ("seed", "base", "large")
HUBS = ("ms", "hf")


@dataclass(frozen=True)
class Architecture:
    """The shape of one emotion2vec+ encoder (data2vec 2.0 audio)."""

    embed_dim: int
    num_heads: int
    prenet_depth: int  # blocks inside the audio encoder
    depth: int  # blocks after it
    conv_pos_width: int = 95
    conv_pos_depth: int = 5
    conv_pos_groups: int = 16
    # (channels, kernel, stride) of the waveform conv stack: 320-sample stride, 400-sample field.
    feature_encoder_spec: str = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"


ARCHITECTURES: dict[str, Architecture] = {
    # seed and base share the base encoder (~94M parameters); large is ~314M.
    "seed": Architecture(embed_dim=768, num_heads=12, prenet_depth=4, depth=8),
    "base": Architecture(embed_dim=768, num_heads=12, prenet_depth=4, depth=8),
    "large": Architecture(embed_dim=1024, num_heads=16, prenet_depth=8, depth=16),
    # For tests and demos only: same code, tiny widths (~4.5M parameters, mostly the conv stack).
    "tiny": Architecture(
        embed_dim=64,
        num_heads=4,
        prenet_depth=1,
        depth=1,
        conv_pos_width=15,
        conv_pos_depth=3,
        conv_pos_groups=4,
        feature_encoder_spec="[(128, 10, 5)] + [(128, 3, 2)] * 4 + [(128, 2, 2)] * 2",
    ),
}


def hub_id(size: str, hub: str) -> str:
    """The hub repository id of emotion2vec+ `size` on ModelScope ('ms') or Hugging Face ('hf')."""
    if size not in SIZES:
        raise ValueError(f"model size must be one of {', '.join(SIZES)}, got {size!r}")
    if hub not in HUBS:
        raise ValueError(f"hub must be one of {', '.join(HUBS)}, got {hub!r}")
    owner = "iic" if hub == "ms" else "emotion2vec"
    return f"{owner}/emotion2vec_plus_{size}"


_CONFIG_TEMPLATE: dict = {
    "model": "Emotion2vec",
    "model_conf": {
        "loss_beta": 0.0,
        "loss_scale": None,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "norm_eps": 1e-05,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.05,
        "mlp_ratio": 4.0,
        "layer_norm_first": False,
        "end_of_block_targets": False,
        "clone_batch": 8,
        "normalize": True,
        "modalities": {
            "audio": {
                "type": "AUDIO",
                "prenet_layerdrop": 0.05,
                "prenet_dropout": 0.1,
                "start_drop_path_rate": 0.0,
                "end_drop_path_rate": 0.0,
                "num_extra_tokens": 10,
                "init_extra_token_zero": True,
                "mask_noise_std": 0.01,
                "mask_prob_min": None,
                "inverse_mask": False,
                "mask_prob": 0.5,
                "mask_prob_adjust": 0.05,
                "keep_masked_pct": 0.0,
                "mask_length": 5,
                "add_masks": False,
                "remove_masks": False,
                "mask_dropout": 0.0,
                "encoder_zero_mask": True,
                "mask_channel_prob": 0.0,
                "mask_channel_length": 64,
                "ema_local_encoder": False,
                "local_grad_mult": 1.0,
                "use_alibi_encoder": True,
                "alibi_scale": 1.0,
                "learned_alibi": False,
                "alibi_max_pos": None,
                "learned_alibi_scale": True,
                "learned_alibi_scale_per_head": True,
                "learned_alibi_scale_per_layer": False,
                "decoder": None,
                "extractor_mode": "layer_norm",
                "conv_pos_pre_ln": False,
            }
        },
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
}


def funasr_config(arch: Architecture) -> dict:
    """The `config.yaml` content funasr needs to build `arch` (as the hub checkpoints ship it)."""
    cfg = copy.deepcopy(_CONFIG_TEMPLATE)
    conf = cfg["model_conf"]
    conf.update(embed_dim=arch.embed_dim, num_heads=arch.num_heads, depth=arch.depth)
    conf["average_top_k_layers"] = arch.depth
    audio = conf["modalities"]["audio"]
    audio.update(
        prenet_depth=arch.prenet_depth,
        model_depth=arch.depth,
        num_alibi_heads=arch.num_heads,
        conv_pos_width=arch.conv_pos_width,
        conv_pos_depth=arch.conv_pos_depth,
        conv_pos_groups=arch.conv_pos_groups,
        feature_encoder_spec=arch.feature_encoder_spec,
    )
    return cfg


TOKENS = PLUS_TOKENS
