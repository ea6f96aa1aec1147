"""How an emostream Ray Serve application is laid out: replicas, resources, retries (no Ray import).

The CLI builds `ClusterOptions` from `emostream serve --ray ...`; the Serve config file carries the
same fields under `args.cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from models.errors import ConfigError


def _option(default, help: str, kind: type | None = None):
    """A field that is also an option of `emostream serve --ray` (`kind` parses it)."""
    return field(default=default, metadata={"help": help, "kind": kind or type(default)})


@dataclass(frozen=True)
class ClusterOptions:
    """Replicas and resources of the Ingress, Scorer and SessionHub deployments."""

    address: str | None = _option(None, "a running Ray cluster ('auto', ray://HOST:10001); default: start a local Ray", str)
    ingress_replicas: int = _option(2, "replicas of the HTTP/WebSocket app (each takes --max-sessions streams)")
    scorer_replicas: int = _option(1, "replicas of the model")
    gpus_per_scorer: float = _option(0.0, "GPUs per scorer replica (fractions share a GPU; 0: CPU)")
    cpus_per_scorer: float = _option(1.0, "CPUs Ray reserves per scorer replica")
    cpus_per_ingress: float = _option(1.0, "CPUs Ray reserves per ingress replica")
    cpus_for_hub: float = _option(0.1, "CPUs Ray reserves for the session hub")
    retry_seconds: float = _option(120.0, "retry a model job this long while a dead scorer replica is replaced")
    ingress_port: int | None = _option(None, "ingress replicas also accept connections on this port themselves "
                                       "(SO_REUSEPORT), bypassing Serve's one-process HTTP proxy", int)
    app_name: str = "emostream"  # the Serve application's name

    def check(self) -> None:
        """Refuse impossible layouts with a message naming the option."""
        for name in ("ingress_replicas", "scorer_replicas"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("gpus_per_scorer", "cpus_per_scorer", "cpus_per_ingress", "cpus_for_hub"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.ingress_port is not None and not 0 < self.ingress_port < 65536:
            raise ConfigError("--ingress-port must be a TCP port")
        if self.retry_seconds <= 0:
            raise ConfigError("--retry-seconds must be positive")

    def cpus_needed(self) -> float:
        """CPUs all replicas reserve together."""
        return (self.ingress_replicas * self.cpus_per_ingress + self.scorer_replicas * self.cpus_per_scorer
                + self.cpus_for_hub)  # fmt: skip

    @classmethod
    def from_mapping(cls, values: dict) -> "ClusterOptions":
        """Options from a Serve config's `args.cluster` (unknown keys are an error)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"unknown cluster option(s): {', '.join(sorted(unknown))}")
        return cls(**values)
