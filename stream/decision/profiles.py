"""Domain context profiles (the seed's step 3): a short text context selects a logit prior shift.

The seed lets callers pass a context such as "medical consultation" and keeps a per-domain
prompt library. emotion2vec+ has no text input, so here a context selects a :class:`Profile`
whose ``logit_bias`` (label -> float) is added to the frame or utterance logits before the
softmax: ``softmax(logits + b)``. That is a change of class prior, nothing else.

The shipped library (``stream/decision/profiles.yaml``, user-editable, any path can be loaded instead)
has **neutral biases (all 0)**: we have no labelled domain data, so any other number would be a
guess. :func:`estimate_bias` fills a profile's biases from labelled recordings of its domain
with the standard label-shift correction (Saerens, Latinne & Decaestecker, 2002):

    b_k = log p_domain(k) - log p_reference(k)

where ``p_domain`` are the domain's label frequencies and ``p_reference`` the frequencies the
model predicts on the same data (its mean softmax) unless a reference prior is given. Adding
``b`` to the logits re-weights the posterior by ``p_domain(k) / p_reference(k)``, which is the
Bayes-correct posterior when only the class prior differs between the model's training data and
the domain.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from models.errors import ConfigError
from models.labels import LABELS
from models.scoring import softmax

DEFAULT_LIBRARY_PATH = Path(__file__).with_name("profiles.yaml")
DEFAULT_PROFILE = "general"


@dataclass(frozen=True)
class Profile:
    """One domain: keywords that select it and the prior shift it applies."""

    name: str
    keywords: tuple[str, ...] = ()  # matched case-insensitively as substrings of the context
    logit_bias: Mapping[str, float] = field(default_factory=dict)  # label -> added logit; missing = 0
    description: str = ""

    def __post_init__(self):
        """Validate labels and values once."""
        unknown = sorted(set(self.logit_bias) - set(LABELS))
        if unknown:
            raise ConfigError(f"profile {self.name!r}: unknown labels {unknown}; allowed: {list(LABELS)}")
        for k, v in self.logit_bias.items():
            if not np.isfinite(float(v)):
                raise ConfigError(f"profile {self.name!r}: bias for {k!r} must be a finite number, got {v!r}")

    def bias_vector(self, labels: Sequence[str] = LABELS) -> np.ndarray:
        """The bias as a (9,) float array in label order."""
        return np.array([float(self.logit_bias.get(k, 0.0)) for k in labels], dtype=np.float64)

    @property
    def is_neutral(self) -> bool:
        """True when every bias is 0 (the profile changes nothing)."""
        return not np.any(self.bias_vector())

    def describe(self) -> dict:
        """What outputs record about the profile that applied."""
        return {
            "name": self.name,
            "neutral": self.is_neutral,
            "logit_bias": {k: float(self.logit_bias.get(k, 0.0)) for k in LABELS},
        }


@dataclass(frozen=True)
class ProfileLibrary:
    """Profiles in file order (the order breaks ties in selection) and the default's name."""

    profiles: tuple[Profile, ...]
    default: str = DEFAULT_PROFILE

    def __post_init__(self):
        """The default must exist and names must be unique."""
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate profile names in {names}")
        if self.default not in names:
            raise ConfigError(f"default profile {self.default!r} is not in the library {names}")

    def __getitem__(self, name: str) -> Profile:
        """The profile called ``name``; ``ConfigError`` naming the choices otherwise."""
        for p in self.profiles:
            if p.name == name:
                return p
        raise ConfigError(f"no profile {name!r}; choose one of {[p.name for p in self.profiles]}")

    @property
    def names(self) -> list[str]:
        """Profile names in file order."""
        return [p.name for p in self.profiles]


def _profile_from_dict(name: str, d: Mapping | None) -> Profile:
    d = dict(d or {})
    extra = sorted(set(d) - {"keywords", "logit_bias", "description"})
    if extra:
        raise ConfigError(f"profile {name!r}: unknown fields {extra}; allowed: keywords, logit_bias, description")
    keywords = d.get("keywords") or []
    if isinstance(keywords, str) or not all(isinstance(k, str) for k in keywords):
        raise ConfigError(f"profile {name!r}: keywords must be a list of strings")
    bias = d.get("logit_bias") or {}
    if not isinstance(bias, Mapping):
        raise ConfigError(f"profile {name!r}: logit_bias must be a mapping label -> number")
    try:
        bias = {str(k): float(v) for k, v in bias.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"profile {name!r}: logit_bias values must be numbers ({exc})") from exc
    return Profile(name=str(name), keywords=tuple(keywords), logit_bias=bias, description=str(d.get("description", "")))


def load_library(path: str | Path | None = None) -> ProfileLibrary:
    """Read a profile library YAML (``stream/profiles.yaml`` when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_LIBRARY_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read profile library {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile library {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("profiles"), Mapping):
        raise ConfigError(f"profile library {path} needs a top-level 'profiles:' mapping")
    profiles = tuple(_profile_from_dict(n, d) for n, d in data["profiles"].items())
    return ProfileLibrary(profiles=profiles, default=str(data.get("default", DEFAULT_PROFILE)))


@functools.cache
def default_profile() -> Profile:
    """The shipped library's default profile (neutral)."""
    library = load_library()
    return library[library.default]


def save_library(library: ProfileLibrary, path: str | Path) -> Path:
    """Write a library as YAML that :func:`load_library` reads back; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "default": library.default,
        "profiles": {
            p.name: {
                "description": p.description,
                "keywords": list(p.keywords),
                "logit_bias": {k: float(p.logit_bias.get(k, 0.0)) for k in LABELS},
            }
            for p in library.profiles
        },
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def select_profile(context: str | None, library: ProfileLibrary) -> Profile:
    """The profile a free-text context selects.

    Each profile's keywords are matched case-insensitively as substrings of the context (so
    Chinese keywords such as 医疗 work without word boundaries). Precedence: the profile with
    the most distinct matching keywords wins; ties go to the profile listed first in the
    library. No match, or an empty/None context, gives the library's default profile. A context
    that equals a profile name exactly (case-insensitive) selects that profile directly.
    """
    if not context or not context.strip():
        return library[library.default]
    text = context.casefold()
    for p in library.profiles:
        if p.name.casefold() == text.strip():
            return p
    best, best_hits = None, 0
    for p in library.profiles:
        hits = sum(1 for k in set(p.keywords) if k and k.casefold() in text)
        if hits > best_hits:
            best, best_hits = p, hits
    return best if best is not None else library[library.default]


def estimate_bias(
    domain_logits: np.ndarray,
    labels: Sequence[str],
    reference_prior: Mapping[str, float] | Sequence[float] | None = None,
) -> dict[str, float]:
    """Prior-shift bias from a domain's labelled data: ``b_k = log p_domain(k) - log p_reference(k)``.

    ``domain_logits`` (N, 9): the model's utterance logits on N labelled domain recordings;
    ``labels`` (N,): their true label names. With K = 9 and add-one smoothing,

    - ``p_domain(k) = (n_k + 1) / (N + K)`` with ``n_k`` the count of label k;
    - ``p_reference(k) = (sum_i softmax(logits_i)_k + 1) / (N + K)`` — the model's predicted
      frequencies (soft counts) with the same smoothing — unless ``reference_prior`` is given
      (label -> probability, or a (9,) vector in label order; normalised to sum 1).

    This is the label-shift correction of Saerens et al. (2002), "Adjusting the outputs of a
    classifier to new a priori probabilities". Returns label -> bias, ready for a profile's
    ``logit_bias``.
    """
    logits = np.asarray(domain_logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(LABELS):
        raise ConfigError(f"domain_logits must be (N, {len(LABELS)}), got shape {logits.shape}")
    labels = [str(x) for x in labels]
    if len(labels) != logits.shape[0]:
        raise ConfigError(f"{logits.shape[0]} logit rows but {len(labels)} labels")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ConfigError(f"unknown labels {unknown}; allowed: {list(LABELS)}")
    n, k = logits.shape
    counts = np.array([labels.count(lab) for lab in LABELS], dtype=np.float64)
    p_domain = (counts + 1.0) / (n + k)
    if reference_prior is None:
        p_ref = (softmax(logits, dtype=np.float64).sum(axis=0) + 1.0) / (n + k)
    else:
        if isinstance(reference_prior, Mapping):
            p_ref = np.array([float(reference_prior.get(lab, 0.0)) for lab in LABELS])
        else:
            p_ref = np.asarray(reference_prior, dtype=np.float64).reshape(-1)
        if p_ref.shape != (k,) or np.any(p_ref <= 0):
            raise ConfigError(f"reference_prior must give a positive probability for each of {list(LABELS)}")
        p_ref = p_ref / p_ref.sum()
    bias = np.log(p_domain) - np.log(p_ref)
    return {lab: float(b) for lab, b in zip(LABELS, bias)}
