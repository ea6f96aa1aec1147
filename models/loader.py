"""Find emotion2vec+ weights (local directory or hub cache) and build a scorer: the one factory."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .architectures import HUBS, SIZES, hub_id
from .errors import ConfigError, ModelUnavailable
from .random_weights import is_random_model_dir, planted_kind
from .scoring import Scorer

log = logging.getLogger(__name__)
# torch, funasr and the hub libraries are imported inside the functions that need them: importing
# `models` loads none of them (the layers above reach the model through the torch-free Scorer).

REQUIRED_FILES = ("config.yaml", "model.pt", "tokens.txt")
DEVICES = ("auto", "cpu", "cuda")
# auto: float16 on CUDA, bfloat16 on CPUs with native BF16, float32 elsewhere (see resolve_dtype).
# int8: dynamic quantization of the linear layers, for CPUs without BF16.
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")


@dataclass(frozen=True)
class ModelOptions:
    """Which emotion2vec+ to load and where to run it."""

    model: str = "large"  # seed | base | large (the seed WebUI uses large)
    hub: str = "ms"  # ms (ModelScope) | hf (Hugging Face), as funasr names them
    model_dir: str | None = None  # local funasr directory; overrides model/hub
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda[:N]
    dtype: str = "auto"  # auto | float32 | bfloat16 (CPUs with native bf16, or CUDA) | float16 (CUDA) | int8 (CPU)
    threads: int | None = None  # CPU threads for torch; None = all cores
    offline: bool = False  # never try to download, only use local files and caches
    cuda_graphs: bool = True  # CUDA: replay captured forwards (models/cuda_graphs.py) where a batch fits
    compile: bool = False  # CPU: the transformer through torch.compile (inductor), compiled once at start-up and cached

    def __post_init__(self):
        if self.model not in SIZES:
            raise ConfigError(f"--model must be one of {', '.join(SIZES)}, got {self.model!r}")
        if self.hub not in HUBS:
            raise ConfigError(f"--hub must be one of {', '.join(HUBS)}, got {self.hub!r}")
        if self.device.split(":")[0] not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")

    @classmethod
    def from_env(cls, **overrides) -> "ModelOptions":
        """Options with EMOSTREAM_MODEL_DIR / EMOSTREAM_OFFLINE applied, then `overrides` (None = unset)."""
        opts = cls(
            model_dir=os.environ.get("EMOSTREAM_MODEL_DIR") or None,
            dtype=os.environ.get("EMOSTREAM_DTYPE") or cls.dtype,
            offline=os.environ.get("EMOSTREAM_OFFLINE", "") not in ("", "0", "false"),
        )
        return replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def fetch_instructions(model_id: str, size: str) -> str:
    """How to bring weights to an offline machine, for error messages (docs/models.md says the same)."""
    return (
        f"On a machine with internet access run one of:\n"
        f"  pip install modelscope && modelscope download --model iic/emotion2vec_plus_{size} "
        f"--local_dir emotion2vec_plus_{size}\n"
        f"  pip install huggingface_hub && hf download emotion2vec/emotion2vec_plus_{size} "
        f"--local-dir emotion2vec_plus_{size}\n"
        f"copy the folder (it holds config.yaml, model.pt, tokens.txt) to this machine and pass "
        f"--model-dir PATH or set EMOSTREAM_MODEL_DIR=PATH. (wanted: {model_id})\n"
        f"To try the server and dashboard without weights: emostream serve --demo (a RANDOM-weight "
        f"model: its output is not emotion recognition)."
    )


def check_model_dir(path: str | Path) -> Path:
    """Return `path` if it is a complete funasr model directory, else raise ModelUnavailable."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelUnavailable(f"model directory {path} does not exist")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelUnavailable(
            f"model directory {path} lacks {', '.join(missing)}; a funasr emotion2vec+ "
            f"directory holds {', '.join(REQUIRED_FILES)}"
        )
    return path


def _cached_snapshot(model_id: str, hub: str) -> Path | None:
    """A complete copy of `model_id` already in the hub library's local cache, if any."""
    try:
        if hub == "hf":
            from huggingface_hub import snapshot_download

            found = snapshot_download(model_id, local_files_only=True)
        else:
            from modelscope.hub.snapshot_download import snapshot_download

            found = snapshot_download(model_id, local_files_only=True)
        return check_model_dir(found)
    except Exception:  # any cache miss, whatever the library raises
        return None


def _download(model_id: str, hub: str) -> Path:
    """Download `model_id` into the hub library's cache."""
    if hub == "hf":
        from huggingface_hub import snapshot_download
    else:
        from modelscope.hub.snapshot_download import snapshot_download
    return check_model_dir(snapshot_download(model_id))


def resolve_model_dir(opts: ModelOptions) -> tuple[Path, str]:
    """Return (local directory, model id) for `opts`, downloading only when allowed."""
    if opts.model_dir:
        path = check_model_dir(opts.model_dir)
        return path, path.name
    model_id = hub_id(opts.model, opts.hub)
    cached = _cached_snapshot(model_id, opts.hub)
    if cached is not None:
        return cached, model_id
    if opts.offline:
        raise ModelUnavailable(
            f"{model_id} is not in the local cache and downloads are off.\n"
            + fetch_instructions(model_id, opts.model)
        )
    try:
        return _download(model_id, opts.hub), model_id
    except Exception as exc:
        raise ModelUnavailable(
            f"could not download {model_id} ({type(exc).__name__}: {str(exc)[:200]}).\n"
            + fetch_instructions(model_id, opts.model)
        ) from exc


def pick_device(device: str) -> str:
    """Resolve 'auto' to 'cuda' when a GPU is usable, else 'cpu'; refuse CUDA without one."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device")
    return device


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as oneDNN reports it."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(dtype: str, device: str) -> str:
    """The precision `dtype` means on `device`: 'auto' becomes float16 on CUDA, bfloat16 on CPUs
    with native BF16, float32 elsewhere; any other value is returned as is."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "float16"
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def check_dtype(dtype: str, device: str) -> None:
    """Refuse precisions the device cannot run well."""
    if dtype == "float16" and not device.startswith("cuda"):
        raise ConfigError("float16 (--half) needs a CUDA device; on the CPU use auto, bfloat16, int8 or float32")
    if dtype == "bfloat16" and device == "cpu" and not cpu_has_native_bf16():
        raise ConfigError("this CPU has no native bfloat16 (AVX-512 BF16 or AMX); use int8 or float32")
    if dtype == "int8" and device != "cpu":
        raise ConfigError("int8 (dynamic quantization) runs on the CPU only; on CUDA use auto or float16")


@contextlib.contextmanager
def _quiet_funasr():
    """funasr prints its version and import diagnostics and logs INFO on every load; hide that
    unless the user asked for INFO logs."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def load_scorer(opts: ModelOptions) -> Scorer:
    """Load emotion2vec+ with funasr's AutoModel from a resolved directory and wrap it."""
    import torch

    with _quiet_funasr():
        from funasr import AutoModel

    from .emotion2vec import Emotion2vecScorer

    path, model_id = resolve_model_dir(opts)
    device = pick_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    check_dtype(dtype, device)
    threads = opts.threads or os.cpu_count() or 1
    try:
        with _quiet_funasr():
            auto = AutoModel(
                model=str(path), device=device, ncpu=threads, disable_update=True, disable_log=True
            )
    except Exception as exc:
        raise ModelUnavailable(f"funasr could not load {path}: {exc}") from exc
    torch.set_num_threads(threads)
    random = is_random_model_dir(path)
    planted = planted_kind(path) if random else None
    if planted:
        log.warning("model %s has PLANTED weights (%s): its scores are not emotion recognition", path, planted)
    elif random:
        log.warning("model %s has RANDOM weights: its scores are not emotion recognition", path)
    scorer = Emotion2vecScorer(
        auto, model_id=model_id, random_weights=random, dtype=dtype, planted=planted, cuda_graphs=opts.cuda_graphs,
        compile=opts.compile,
    )
    log.info("model %s on %s, precision %s", model_id, device, scorer.precision)
    return scorer
