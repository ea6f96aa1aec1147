"""A short smoke of bench/reliability.py: a brief soak and the kill -9 part, against the real server."""

from __future__ import annotations

import re

from bench import reliability


def test_short_soak_and_crash_figures(planted_model_dir, capsys):
    assert reliability.main(["--only", "R1", "R3", "--soak-minutes", "0.25", "--soak-streams", "2",
                             "--seed", "3", "--model-dir", str(planted_model_dir)]) == 0
    out = capsys.readouterr().out
    figures = [line for line in out.splitlines() if line.startswith("R")]
    assert any("sessions dropped 0/2" in line for line in figures), out
    assert any("recorded/sent samples per session: all equal" in line for line in figures), out
    assert any(re.search(r"server RSS start \d+ MiB, end \d+ MiB", line) for line in figures), out
    lost = next(line for line in figures if "audio lost per session" in line)
    # Audio is flushed every second: a crash loses at most about that much.
    assert all(float(x) <= 1.1 for x in re.findall(r"([\d.]+) s(?:,|$| \()", lost.split("per session")[1])), lost
    assert any("torn event lines before repair" in line and "2/2 sessions readable" in line for line in figures), out
    # The measuring workers die with the server (issue 17, finding 13).
    assert any(re.search(r"processes outliving the server 0/[1-9]", line) for line in figures), out
