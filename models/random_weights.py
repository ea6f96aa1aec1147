"""Model directories with fixed random weights, for tests, demos and benchmarks.

Output of such a model is NOT emotion recognition: the directory carries a marker file and
every result made with it says so.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from .architectures import ARCHITECTURES, TOKENS, funasr_config
from .scoring import RANDOM_WEIGHTS_WARNING

MARKER = "emostream_random_weights.json"


def write_random_model_dir(path: str | Path, arch: str = "tiny", seed: int = 0) -> Path:
    """Write a funasr-layout emotion2vec+ directory of architecture `arch` with seeded random weights."""
    # torch and funasr load here, not at import: the loader imports this module, and `models` loads no torch.
    import torch
    from funasr.models.emotion2vec.model import Emotion2vec

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = funasr_config(ARCHITECTURES[arch])
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=config["model_conf"], vocab_size=len(TOKENS))
    with torch.no_grad():
        # funasr initialises the extra tokens at zero; random ones exercise more of the graph.
        model.modality_encoders["AUDIO"].extra_tokens.normal_(0.0, 0.5)
    torch.save(model.state_dict(), path / "model.pt")
    (path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    (path / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    # The hub layout also has configuration.json pointing at the files above.
    (path / "configuration.json").write_text(
        json.dumps(
            {
                "framework": "pytorch",
                "task": "emotion-recognition",
                "model": {"type": "emotion2vec"},
                "file_path_metas": {
                    "init_param": "model.pt",
                    "config": "config.yaml",
                    "tokenizer_conf": {"token_list": "tokens.txt"},
                },
            },
            indent=2,
        )
    )
    (path / MARKER).write_text(json.dumps({"arch": arch, "seed": seed, "warning": RANDOM_WEIGHTS_WARNING}))
    return path


def is_random_model_dir(path: str | Path) -> bool:
    """True when `path` was written by write_random_model_dir (its scores mean nothing)."""
    return (Path(path) / MARKER).exists()


def demo_model_dir(cache: str | Path | None = None) -> Path:
    """The random-weight model `emostream serve --demo` runs, written once into the user's cache.

    `cache` defaults to $XDG_CACHE_HOME/emostream (~/.cache/emostream). The directory is written
    under a temporary name and renamed, so an interrupted first run never leaves half a model.
    """
    root = Path(cache) if cache else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emostream"
    target = root / "demo-tiny-random"
    if (target / MARKER).is_file() and (target / "model.pt").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root))
    try:
        write_random_model_dir(tmp, "tiny", seed=0)
        os.replace(tmp, target)
    except OSError:
        if not (target / "model.pt").is_file():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def planted_kind(path: str | Path) -> str | None:
    """The planted head's kind when `path` was written by models.planted (random encoder, planted head)."""
    marker = Path(path) / MARKER
    if not marker.exists():
        return None
    return json.loads(marker.read_text()).get("planted")
