"""How an emostream Ray Serve application is laid out: replicas, resources, retries (no Ray import).

The CLI builds `ClusterOptions` from `emostream serve --ray ...`; the Serve config file carries the
same fields under `args.cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from models.errors import ConfigError


@dataclass(frozen=True)
class ClusterOptions:
    """Replicas and resources of the Ingress, Scorer and SessionHub deployments."""

    address: str | None = None  # a running Ray cluster ("auto", "ray://host:10001"); None: start a local Ray
    ingress_replicas: int = 2
    scorer_replicas: int = 1
    gpus_per_scorer: float = 0.0  # fractional is fine: several scorer replicas may share one GPU
    cpus_per_scorer: float = 1.0
    cpus_per_ingress: float = 1.0
    cpus_for_hub: float = 0.1
    retry_seconds: float = 120.0  # how long a model job is retried while a dead scorer replica is replaced
    app_name: str = "emostream"

    def check(self) -> None:
        """Refuse impossible layouts with a message naming the option."""
        for name in ("ingress_replicas", "scorer_replicas"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("gpus_per_scorer", "cpus_per_scorer", "cpus_per_ingress", "cpus_for_hub"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.retry_seconds <= 0:
            raise ConfigError("--retry-seconds must be positive")

    @classmethod
    def from_mapping(cls, values: dict) -> "ClusterOptions":
        """Options from a Serve config's `args.cluster` (unknown keys are an error)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"unknown cluster option(s): {', '.join(sorted(unknown))}")
        return cls(**values)
