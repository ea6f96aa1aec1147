"""The Serve config in the repository builds the application it describes (no Ray cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.errors import ConfigError
from stream.cluster.launch import app_builder, settings_from_mapping
from stream.cluster.topology import ClusterOptions

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve.yaml"


def test_the_shipped_serve_config_builds_the_application(monkeypatch):
    monkeypatch.setenv("EMOSTREAM_TOKEN", "from-the-environment")
    (entry,) = yaml.safe_load(CONFIG.read_text())["applications"]
    assert entry["import_path"] == "stream.cluster.launch:app_builder"
    assert entry["name"] == ClusterOptions.app_name
    app = app_builder(entry["args"])
    ingress = app._bound_deployment
    assert ingress.name == "Ingress" and ingress.num_replicas == 8
    settings, scorer, hub, options = ingress.init_args
    scorer, hub = scorer._bound_deployment, hub._bound_deployment
    assert settings.token == "from-the-environment" and settings.recordings == Path("/shared/emostream/recordings")
    assert options.gpus_per_scorer == 1 and scorer.num_replicas == 1 and scorer.ray_actor_options["num_gpus"] == 1
    assert scorer.init_args[0].dtype == "float16" and hub.name == "SessionHub"


def test_config_mistakes_are_named():
    with pytest.raises(ConfigError, match="ingress-replicas"):
        app_builder({"cluster": {"ingress_replicas": 0}})
    with pytest.raises(ConfigError, match="replicas_typo"):
        ClusterOptions.from_mapping({"replicas_typo": 3})
    with pytest.raises(ValueError, match="max_sesions"):
        settings_from_mapping({"max_sesions": 3})
    assert settings_from_mapping({"max_sessions": "12", "recordings": "/r"}).max_sessions == 12
