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
from urllib.parse import urlsplit

import ray
from ray import serve
from ray.serve import Application

from models.errors import ConfigError
from models.loader import ModelOptions
from stream.server.settings import ServerSettings, for_device, is_loopback, repeated

from .hub import SessionHub
from .ingress import IngressDeployment
from .scorer import ScorerDeployment
from .topology import ClusterOptions

log = logging.getLogger("emostream.cluster")
# Per-request access logs would log every hub exchange (ten a second per replica) and every job.
LOGGING = {"enable_access_log": False, "log_level": "WARNING"}
# Serve's HTTP proxies take WebSocket messages up to uvicorn's default ws_max_size and cannot be
# told otherwise: a larger --max-message-bytes would be a limit the cluster does not keep.
PROXY_MAX_MESSAGE_BYTES = 16 << 20
# Credentials a Serve config may not hold (Serve logs an application's args when it builds it, and
# `serve config` prints them): they come from EMOSTREAM_<NAME> in the runtime environment.
SECRETS = ("token", "stream_token", "watch_token", "admin_token", "twilio_auth_token", "mqtt_password",
           "webhook_secret", "audiohook_api_key", "audiohook_client_secret")
# Where and how Serve's HTTP proxies listen: `serve --ray`'s options, or a Serve config's `http_options`.
HTTP_FIELDS = ("host", "port", "ssl_certfile", "ssl_keyfile")


def absolute(settings: ServerSettings, model: ModelOptions) -> tuple[ServerSettings, ModelOptions]:
    """Paths resolved here: replicas run in other working directories (on a cluster, other machines)."""
    paths = {
        name: Path(getattr(settings, name)).resolve()
        for name in ("recordings", "audio_root", "profiles", "centroids", "ssl_certfile", "ssl_keyfile", "mqtt_ca_file")
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


def check_settings(settings: ServerSettings) -> None:
    """`emostream serve`'s checks, and what a cluster adds to them."""
    settings.check()
    if settings.max_message_bytes > PROXY_MAX_MESSAGE_BYTES:
        raise ConfigError(f"--max-message-bytes must be at most {PROXY_MAX_MESSAGE_BYTES} on Ray: "
                          "Serve's HTTP proxy takes WebSocket messages up to that size, whatever the application says")
    if settings.webhook:  # each ingress replica would deliver every replica's outbox rows (docs/webhooks.md)
        raise ConfigError("--webhook is not supported on Ray yet: serve webhooks from a single-process server")
    if not is_loopback(settings.host) and not settings.allowed_hosts:
        raise ConfigError(f"serving on {settings.host} on Ray needs --allowed-hosts (args.server.allowed_hosts in a "
                          "Serve config): the Host names clients use")


def http_options(settings: ServerSettings) -> dict:
    """Serve's HTTP options for these settings: where its proxies listen, and their TLS when configured."""
    options = {"host": settings.host, "port": settings.port}
    if settings.ssl_certfile is not None:
        options.update(ssl_certfile=str(settings.ssl_certfile), ssl_keyfile=str(settings.ssl_keyfile))
    return options


def serve_http_options() -> dict | None:
    """The running Serve instance's HTTP options; None where no Serve is reachable (`serve build`, no Ray)."""
    if not ray.is_initialized():
        return None
    # No public API tells an application builder where the proxies listen; the controller knows.
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    return {name: getattr(client.http_config, name) for name in (*HTTP_FIELDS, "ssl_keyfile_password", "ssl_ca_certs")}


def check_proxies(wanted: dict, running: dict | None) -> None:
    """Refuse when Serve already runs with other HTTP options: Ray would keep its own and only warn."""
    differ = [name for name in HTTP_FIELDS if running is not None and running.get(name) != wanted.get(name)]
    if differ:
        found = ", ".join(f"{name}={running.get(name)!r}" for name in differ)
        raise ConfigError(f"Serve already runs on this Ray cluster with other HTTP options ({found}): "
                          "give the same --host/--port/--ssl-* options, or stop it first (`serve shutdown`)")


def app_builder(args: dict) -> Application:
    """The application a Serve config describes: `args` holds `model`, `server` and `cluster` mappings.

    Host, port and TLS come from the config's `http_options` (Serve's proxies), every credential
    from EMOSTREAM_<NAME> in the runtime environment, and the settings pass `serve`'s checks.
    """
    model = ModelOptions.from_env(**(args.get("model") or {}))
    options = ClusterOptions.from_mapping(args.get("cluster") or {})
    http = serve_http_options()
    settings = settings_from_mapping(server_values(args.get("server") or {}, os.environ, http))
    check_settings(settings)
    if options.ingress_port is not None and http and (http.get("ssl_keyfile_password") or http.get("ssl_ca_certs")):
        raise ConfigError("ingress_port serves TLS from ssl_certfile and ssl_keyfile alone: "
                          "leave ssl_keyfile_password and ssl_ca_certs out of http_options")
    return build_app(settings, model, options)


def server_values(values: dict, environ, http: dict | None) -> dict:
    """A Serve config's `args.server`, its credentials taken from `environ` and its host, port and TLS from `http`."""
    for name in SECRETS:
        if values.get(name) is not None:
            raise ConfigError(f"args.server.{name}: a Serve config holds no secret (Serve logs and shows it); "
                              f"set EMOSTREAM_{name.upper()} in the runtime environment")
    if urlsplit(str(values.get("mqtt") or "")).password:
        raise ConfigError("args.server.mqtt: keep the password out of the URL; "
                          "set EMOSTREAM_MQTT_PASSWORD in the runtime environment")
    if urlsplit(str(values.get("catalog") or "")).password:
        raise ConfigError("args.server.catalog: keep the password out of the URL; "
                          "set EMOSTREAM_CATALOG (the whole URL) in the runtime environment")
    merged = dict(values)
    for name in (*SECRETS, "mqtt", "catalog"):  # (whole URLs, passwords included, may come from the environment)
        if merged.get(name) is None and environ.get(f"EMOSTREAM_{name.upper()}"):
            merged[name] = environ[f"EMOSTREAM_{name.upper()}"]
    for name in HTTP_FIELDS if http is not None else ():
        if name in values and str(values[name]) != str(http.get(name)):
            raise ConfigError(f"args.server.{name} is {values[name]!r} but Serve's http_options say "
                              f"{http.get(name)!r}: set it in http_options only")
        if http.get(name) is not None:
            merged[name] = http[name]
    return merged


def settings_from_mapping(values: dict) -> ServerSettings:
    """ServerSettings from a config mapping, each value parsed as its command-line option is."""
    kinds = {f.name: f.metadata["kind"] for f in fields(ServerSettings) if "kind" in f.metadata}
    unknown = set(values) - set(kinds)
    if unknown:
        raise ValueError(f"unknown server setting(s): {', '.join(sorted(unknown))}")
    many = {f.name for f in fields(ServerSettings) if f.metadata.get("many")}  # (a list, or a string of several)
    return ServerSettings(**{k: v if v is None else repeated(v, kinds[k]) if k in many else kinds[k](v)
                             for k, v in values.items()})


def run(settings: ServerSettings, model: ModelOptions, options: ClusterOptions) -> None:
    """Start (or join) Ray, serve the application on --host/--port (TLS with --ssl-*) until interrupted."""
    check_settings(settings)
    options.check()
    settings, model = absolute(settings, model)  # the proxies read the certificate from this path
    if options.address is None:
        # A local Ray offers the machine's cores; the replicas' reservations may add up to more on
        # a small machine, and they are only reservations: let them all start.
        ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(options.cpus_needed())), logging_level=logging.WARNING)
    else:
        ray.init(address=options.address, logging_level=logging.WARNING)
    # SIGTERM (a service manager, a container stop) shuts Serve and a local Ray down like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    wanted = http_options(settings)
    try:
        serve.start(http_options=wanted)
        check_proxies(wanted, serve_http_options())
    except BaseException:
        ray.shutdown()  # a Serve instance that ran before stays as it was
        raise
    try:
        serve.run(build_app(settings, model, options), name=options.app_name, route_prefix="/")
        scheme = "https" if settings.ssl_certfile else "http"
        print(f"emostream on Ray Serve: {scheme}://{settings.host}:{settings.port}/ "
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
