"""The layout's guard: imports run one way through the layers, and the import graph has no circle.

Every import of every module is read with `ast`, function-level ones included, and resolved to the
module it loads. docs/architecture.md draws the layers. The guard is tested too: synthetic upward,
sideways and circular imports must fail it, and the CLI and the plain server must load no Ray.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "vad", "stream")

# Layers from the bottom up: a module may import its own layer and the layers below, never above.
# `models` and `vad` share the bottom rank but are separate layers: neither imports the other.
LAYERS = {
    "models": 0,
    "vad": 0,
    "stream": 1,  # the package's __init__ (a docstring)
    "stream.decision": 2,
    "stream.engine": 3,
    "stream.protocol": 4,
    "stream.offline": 5,
    "stream.client": 6,  # the /ws/stream client: never imports the server
    # What the server keeps on disk, each on its own: recordings, the access log, what an alert is.
    "stream.server.recording": 7,
    "stream.server.audit": 7,
    "stream.server.alerts": 7,
    "stream.server.catalog": 8,  # the index of those records: never imports the live server
    "stream.server": 9,
    "stream.cluster": 10,  # the server on Ray Serve (optional extra)
    "stream.cli": 11,
    "server": 12,  # the entry point: nothing imports it
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project, by dotted name."""
    found = {"server": ROOT / "server.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def layer_of(module: str) -> str:
    """The longest LAYERS key that is the module or a package above it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise KeyError(f"{module} belongs to no layer: add its package to LAYERS")


def imports_of(module: str, path: Path) -> set[str]:
    """The project modules `module` imports anywhere in its file (inside functions too)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import mod` loads pkg.mod when that is a module, else a name of pkg.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import a.b.c` loads a, a.b and a.b.c
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of `graph` that points to a higher layer or sideways to a layer of the same rank."""
    wrong = []
    for name, targets in sorted(graph.items()):
        here = layer_of(name)
        for target in sorted(targets):
            there = layer_of(target)
            if there != here and LAYERS[there] >= LAYERS[here]:  # within a layer: see the circle test
                wrong.append(f"{name} -> {target} ({here} may not import {there})")
    return wrong


def test_imports_never_point_upward_or_sideways():
    wrong = layer_violations(GRAPH)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_models_and_vad_import_nothing_from_stream():
    wrong = [f"{n} -> {t}" for n, ts in GRAPH.items() for t in ts
             if n.split(".")[0] in ("models", "vad") and t.split(".")[0] in ("stream", "server")]  # fmt: skip
    assert not wrong


def test_nothing_imports_the_entry_point():
    assert [n for n, ts in GRAPH.items() if "server" in ts] == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_circle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_guard_sees_circles_and_function_level_imports(tmp_path):
    """The checks above would fail on a circle hidden in a function."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from stream.cli.main import main\n    from . import options\n")
    assert imports_of("stream.engine.mod", source) == {"stream.cli.main", "stream.engine"}


def test_the_guard_fails_an_upward_import(tmp_path):
    """A module tree with one upward import, read from disk like the real tree, must fail the checker."""
    engine = tmp_path / "stream" / "engine"
    engine.mkdir(parents=True)
    (engine / "leaky.py").write_text(
        "from models.scoring import Scorer\n"  # downward: allowed
        "from ..decision import checks\n"  # downward, relative: allowed
        "\n\ndef hook():\n    from stream.server.app import create_app  # upward, hidden in a function\n"
    )
    graph = {"stream.engine.leaky": imports_of("stream.engine.leaky", engine / "leaky.py")}
    assert graph["stream.engine.leaky"] == {"models.scoring", "stream.decision.checks", "stream.server.app"}
    assert layer_violations(graph) == ["stream.engine.leaky -> stream.server.app (stream.engine may not import stream.server)"]
    # Without the upward import the same tree passes: the checker is not simply failing everything.
    graph["stream.engine.leaky"].discard("stream.server.app")
    assert layer_violations(graph) == []


@pytest.mark.parametrize(
    ("importer", "imported", "why"),
    [
        ("stream.client.connection", "stream.server.app", "stream.client may not import stream.server"),
        ("stream.server.app", "stream.cluster.ingress", "stream.server may not import stream.cluster"),
        ("stream.decision.checks", "stream.engine.analyzer", "stream.decision may not import stream.engine"),
        ("models.loader", "vad.segmenter", "models may not import vad"),  # same rank, separate layers
        ("vad.segmenter", "stream.engine.analyzer", "vad may not import stream.engine"),
        ("stream.cli.main", "server", "stream.cli may not import server"),
        ("stream.server.catalog.store", "stream.server.app", "stream.server.catalog may not import stream.server"),
        ("stream.server.recording", "stream.server.catalog.store",
         "stream.server.recording may not import stream.server.catalog"),
    ],
)
def test_the_guard_fails_each_kind_of_wrong_import(importer, imported, why):
    """Fed a synthetic import list, the checker names each import against the layers."""
    assert layer_violations({importer: {imported}}) == [f"{importer} -> {imported} ({why})"]
    assert find_cycle({importer: {imported}}) is None  # a wrong direction alone is no circle


@pytest.mark.parametrize("module", ["stream.cli.main", "stream.server.app"])
def test_the_cli_and_the_plain_server_load_without_ray(module):
    """Ray is an optional extra: only `serve --ray` imports it, so the CLI and the one-process server never load it."""
    code = f"import sys, {module}; assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), 'ray loaded'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("module", ["stream.engine.analyzer", "stream.decision.checks", "stream.protocol.native"])
def test_the_engine_decision_layer_and_protocol_load_without_torch(module):
    """The engine reaches the model only through the Scorer protocol: importing it loads no torch."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
