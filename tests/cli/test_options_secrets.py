"""Issue 17, finding 11: `serve --help` never prints the secrets it read from EMOSTREAM_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stream.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "EMOSTREAM_TOKEN": "tok-4f1c9a",
    "EMOSTREAM_STREAM_TOKEN": "stream-8d2e7b",
    "EMOSTREAM_WATCH_TOKEN": "watch-3a9f0c",
    "EMOSTREAM_ADMIN_TOKEN": "admin-7e5b21",
    "EMOSTREAM_TWILIO_AUTH_TOKEN": "twilio-c0ffee",
    "EMOSTREAM_MQTT_PASSWORD": "mqttpw-91b3",
    "EMOSTREAM_MQTT": "mqtt://site:urlpw-55aa@broker.local:1883",
    "EMOSTREAM_CATALOG": "postgresql://emo:catpw-6b2d@db.local/emostream",
    "EMOSTREAM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "EMOSTREAM_AUDIOHOOK_API_KEY": "ahkey-0d93e1",
}
URL_PASSWORDS = {"EMOSTREAM_MQTT": "urlpw-55aa", "EMOSTREAM_CATALOG": "catpw-6b2d"}


def test_serve_help_masks_secrets_from_the_environment():
    env = dict(os.environ, EMOSTREAM_OFFLINE="1", **SECRETS)
    done = subprocess.run([sys.executable, str(ROOT / "server.py"), "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())  # argparse wraps help lines
    for name, value in SECRETS.items():
        assert URL_PASSWORDS.get(name, value) not in flat, f"{name}'s value is printed by --help"
    assert flat.count("default ***") >= 6, flat
    assert "mqtt://site:***@broker.local:1883" in flat  # the URL stays recognisable, its password not
    assert "postgresql://emo:***@db.local/emostream" in flat
    assert "default emostream" in flat  # other defaults are still shown


def test_masked_options_keep_their_values(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["serve"])
    assert (args.token, args.admin_token, args.mqtt_password) == ("tok-4f1c9a", "admin-7e5b21", "mqttpw-91b3")
    assert args.mqtt == SECRETS["EMOSTREAM_MQTT"]
