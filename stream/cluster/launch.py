"""Build the emostream Serve application and run it (`emostream serve --ray`, `serve deploy`).

The graph: Ingress (N replicas, the HTTP/WebSocket entry) → Scorer (M replicas, the model) and
Ingress → SessionHub (one replica). `app_builder` is the import path a Serve config names.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from dataclasses import fields, replace
from pathlib import Path

import ray
from ray import serve
from ray.serve import Application

from models.loader import ModelOptions
from stream.server.settings import ServerSettings, for_device

from .hub import SessionHub
from .ingress import IngressDeployment
from .scorer import ScorerDeployment
from .topology import ClusterOptions

log = logging.getLogger("emostream.cluster")
# Per-request access logs would log every hub exchange (ten a second per replica) and every job.
LOGGING = {"enable_access_log": False, "log_level": "WARNING"}


def absolute(settings: ServerSettings, model: ModelOptions) -> tuple[ServerSettings, ModelOptions]:
    """Paths resolved here: replicas run in other working directories (on a cluster, other machines)."""
    paths = {
        name: Path(getattr(settings, name)).resolve()
        for name in ("recordings", "audio_root", "profiles", "centroids")
        if getattr(settings, name) is not None
    }
    model_dir = str(Path(model.model_dir).resolve()) if model.model_dir else None
    return replace(settings, **paths), replace(model, model_dir=model_dir)


def build_app(settings: ServerSettings, model: ModelOptions, options: ClusterOptions) -> Application:
    """The Serve application: Ingress replicas in front of Scorer replicas and one SessionHub."""
    options.check()
    settings, model = absolute(settings, model)
    # Unset batching, queue and chunk settings follow the scorers' device, as in one process.
    settings, _ = for_device(settings, "cuda" if options.gpus_per_scorer > 0 else "cpu")
    jobs_per_replica = math.ceil(settings.max_pending / settings.analyzer.chunk_seconds)
    scorer = serve.deployment(
        ScorerDeployment,
        name="Scorer",
        num_replicas=options.scorer_replicas,
        ray_actor_options={"num_cpus": options.cpus_per_scorer, "num_gpus": options.gpus_per_scorer},
        # Every ingress replica may have --max-pending seconds of chunks out; they wait in @serve.batch's queue.
        max_ongoing_requests=max(options.ingress_replicas * jobs_per_replica, 2 * settings.max_batch),
        health_check_period_s=5,
        logging_config=LOGGING,
    ).bind(model, settings.max_batch, settings.max_wait_ms / 1000, settings.analyzer.job_samples)
    hub = serve.deployment(
        SessionHub,
        name="SessionHub",
        num_replicas=1,
        ray_actor_options={"num_cpus": options.cpus_for_hub},
        max_ongoing_requests=4 * options.ingress_replicas + 16,  # a publish and a long poll per replica
        logging_config=LOGGING,
    ).bind()
    return serve.deployment(
        IngressDeployment,
        name="Ingress",
        num_replicas=options.ingress_replicas,
        ray_actor_options={"num_cpus": options.cpus_per_ingress},
        # Each WebSocket is one ongoing request for as long as it is open.
        max_ongoing_requests=settings.max_sessions + 64,
        logging_config=LOGGING,
    ).bind(settings, scorer, hub, options)


def app_builder(args: dict) -> Application:
    """The application a Serve config describes: `args` holds `model`, `server` and `cluster` mappings."""
    model = ModelOptions.from_env(**(args.get("model") or {}))
    options = ClusterOptions.from_mapping(args.get("cluster") or {})
    server = {"token": os.environ.get("EMOSTREAM_TOKEN"), **(args.get("server") or {})}  # keep secrets out of the file
    return build_app(settings_from_mapping(server), model, options)


def settings_from_mapping(values: dict) -> ServerSettings:
    """ServerSettings from a config mapping, each value parsed as its command-line option is."""
    kinds = {f.name: f.metadata["kind"] for f in fields(ServerSettings) if "kind" in f.metadata}
    unknown = set(values) - set(kinds)
    if unknown:
        raise ValueError(f"unknown server setting(s): {', '.join(sorted(unknown))}")
    return ServerSettings(**{k: v if v is None else kinds[k](v) for k, v in values.items()})


def run(settings: ServerSettings, model: ModelOptions, options: ClusterOptions) -> None:
    """Start (or join) Ray, serve the application on --host/--port until interrupted."""
    settings.check()
    options.check()
    if options.address is None:
        # A local Ray offers the machine's cores; the replicas' reservations may add up to more on
        # a small machine, and they are only reservations: let them all start.
        ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(options.cpus_needed())), logging_level=logging.WARNING)
    else:
        ray.init(address=options.address, logging_level=logging.WARNING)
    # SIGTERM (a service manager, a container stop) shuts Serve and a local Ray down like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_app(settings, model, options), name=options.app_name, route_prefix="/")
        print(f"emostream on Ray Serve: http://{settings.host}:{settings.port}/ "
              f"({options.ingress_replicas} ingress, {options.scorer_replicas} scorer replicas); Ctrl-C stops",
              flush=True)  # fmt: skip
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(Exception):  # a cluster already gone has nothing left to stop
            serve.shutdown()
        ray.shutdown()


def _interrupt(signum, frame) -> None:
    """Turn a signal into the KeyboardInterrupt that `run` stops on."""
    raise KeyboardInterrupt
