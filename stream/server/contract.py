"""The wire contract in the documents: tables written from the code, and a check that code and documents agree.

`python -m stream.server.contract --write` rewrites each generated block of docs/protocol.md and
docs/http-api.md — between `<!-- contract:NAME -->` and `<!-- /contract:NAME -->` — from
stream.protocol.codes (error codes, close codes, session statuses); `--check` (and
tests/server/test_contract.py) lists where the documents differ from the code: a stale block, or a
field of a message's JSON Schema (stream.server.message_schemas) that its section does not name.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from stream.protocol import codes
from stream.protocol.closing import LOST

from . import message_schemas

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = "docs/protocol.md"
EVENTS_DOC = "docs/events.md"
HTTP_DOC = "docs/http-api.md"
MONITOR_HEADING = "## Monitor feed"  # the section of docs/protocol.md that holds /ws/monitor
ENVELOPE = ("type", "session_id", "party", "replay")  # fields every session message shares, described once


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _close(error: codes.SocketError) -> str:
    if error.close_text:
        return error.close_text
    return str(int(error.close)) if error.close is not None else "—"


def error_table(errors) -> str:
    """A Markdown table of socket error codes: code, when, close."""
    rows = [f"| `{e.code}` | {_cell(e.when)} | {_close(e)} |" for e in errors]
    return "\n".join(["| code | when | close |", "|---|---|---|", *rows])


def monitor_error_table(errors) -> str:
    """A Markdown table of the monitor's error codes (none closes the feed)."""
    rows = [f"| `{e.code}` | {_cell(e.when)} |" for e in errors]
    return "\n".join(["| code | when |", "|---|---|", *rows])


def close_table() -> str:
    """A Markdown table of the close codes, each with the error codes (the close reason) that bring it."""
    by_close: dict[int, list[str]] = {}
    for error in codes.STREAM_ERRORS:
        close = error.close or error.sometimes
        if close is not None:
            by_close.setdefault(int(close), []).append(f"`{error.code}`")
    for reason, (close, _) in codes.CLOSE_ONLY.items():
        by_close.setdefault(int(close), []).append(f"`{reason}` (no `error`)")
    rows = [f"| {int(code)} | {_cell(close.meaning)} | {', '.join(by_close.get(int(code), [])) or '—'} | "
            f"{_cell(close.advice)} |" for code, close in codes.CLOSES.items()]
    rows.append(f"| {LOST} | {_cell(codes.LOST_CLOSE.meaning)} | — | {_cell(codes.LOST_CLOSE.advice)} |")
    close_only = [f"`{reason}`: {_cell(text)}" for reason, (_, text) in codes.CLOSE_ONLY.items()]
    return "\n".join(["| code | meaning | reason: the error code | what to do |", "|---|---|---|---|", *rows, "",
                      "Closes without an `error` message: " + "; ".join(close_only) + "."])


def status_table() -> str:
    """A Markdown table of session statuses."""
    rows = [f"| `{status}` | {_cell(text)} |" for status, text in codes.STATUSES.items()]
    return "\n".join(["| status | meaning |", "|---|---|", *rows])


def http_error_table() -> str:
    """A Markdown table of HTTP error codes and their statuses."""
    rows = [f"| `{e.code}` | {', '.join(map(str, e.statuses))} | {_cell(e.when)} |" for e in codes.HTTP_ERRORS]
    return "\n".join(["| code | status | when |", "|---|---|---|", *rows])


# (document, block name) -> what writes it
BLOCKS: dict[tuple[str, str], Callable[[], str]] = {
    (PROTOCOL_DOC, "errors-stream"): lambda: error_table(codes.STREAM_ERRORS),
    (PROTOCOL_DOC, "errors-replay"): lambda: error_table(codes.REPLAY_ERRORS),
    (PROTOCOL_DOC, "errors-monitor"): lambda: monitor_error_table(codes.MONITOR_ERRORS),
    (PROTOCOL_DOC, "close-codes"): close_table,
    (PROTOCOL_DOC, "statuses"): status_table,
    (HTTP_DOC, "errors-http"): http_error_table,
}


def _block_re(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- contract:{re.escape(name)} -->\n)(.*?)(<!-- /contract:{re.escape(name)} -->)", re.S)


def write(text: str, name: str, body: str) -> str:
    """`text` with block `name` holding `body`; ValueError when its markers are missing."""
    pattern = _block_re(name)
    if not pattern.search(text):
        raise ValueError(f"no <!-- contract:{name} --> ... <!-- /contract:{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text, count=1)


def _section(text: str, heading: str) -> str | None:
    """The text under the first heading line that contains `heading`, up to the next heading of its level or above."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(#+) ", line)
        if match and heading in line:
            level = len(match.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if (m := re.match(r"(#+) ", lines[j])) and len(m.group(1)) <= level), len(lines))
            return "\n".join(lines[i:end])
    return None


def split_protocol(text: str) -> tuple[str, str]:
    """docs/protocol.md as (everything but the monitor feed, the monitor feed's section)."""
    monitor = _section(text, MONITOR_HEADING) or ""
    return text.replace(monitor, ""), monitor


def _properties(schema: dict, defs: dict) -> dict:
    if "$ref" in schema:
        return _properties(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    return schema.get("properties", {})


def missing_fields(section: str | None, fields, where: str) -> list[str]:
    """Problems: the section is missing, or does not name a field (as `field`)."""
    if section is None:
        return [f"{where}: no section"]
    return [f"{where}: field `{f}` is not documented" for f in fields if f"`{f}`" not in section]


def field_problems(docs: dict[str, str], document: dict | None = None) -> list[str]:
    """Fields of the message schemas that their sections in the documents do not name."""
    document = document or message_schemas.build()
    defs = document["$defs"]
    stream_text, monitor_text = split_protocol(docs[PROTOCOL_DOC])
    problems = []
    for endpoint, text in (("/ws/stream", stream_text), ("/ws/monitor", monitor_text)):
        for direction in ("client", "server"):
            for kind, ref in document["x-endpoints"][endpoint][direction].items():
                name = ref.rsplit("/", 1)[1]
                props = _properties(defs[name], defs)
                if kind in message_schemas.SESSION_EVENTS:  # events: docs/events.md, their envelope here
                    section = _section(docs[EVENTS_DOC], f"`{kind}`")
                    problems += missing_fields(section, [p for p in props if p not in ENVELOPE],
                                               f"{EVENTS_DOC} `{kind}`")
                    continue
                if endpoint == "/ws/monitor" and kind in ("overload",):  # a /ws/stream message, forwarded as it is
                    continue
                section = _section(text, f"`{kind}`")
                problems += missing_fields(section, [p for p in props if p != "type"], f"{PROTOCOL_DOC} {endpoint} `{kind}`")
    problems += missing_fields(_section(stream_text, "`summary`"), _properties(defs["Stats"], defs),
                               f"{PROTOCOL_DOC} `summary` stats")
    problems += missing_fields(_section(stream_text, "### Events"), ["session_id", "party"], f"{PROTOCOL_DOC} Events")
    for part in ("SessionState", "Alert", "Change"):
        problems += missing_fields(_section(monitor_text, f"`{part}`"), _properties(defs[part], defs),
                                   f"{PROTOCOL_DOC} /ws/monitor `{part}`")
    return problems


def check(docs: dict[str, str], document: dict | None = None) -> list[str]:
    """Where the documents (path -> text) differ from the code: stale generated blocks, undocumented fields."""
    problems = []
    for (path, name), render in BLOCKS.items():
        match = _block_re(name).search(docs[path])
        if match is None:
            problems.append(f"{path}: no <!-- contract:{name} --> block")
        elif match.group(2) != render() + "\n":
            problems.append(f"{path}: the {name} block is not what the code says (python -m stream.server.contract --write)")
    return problems + field_problems(docs, document)


def read_docs(root: Path = ROOT) -> dict[str, str]:
    """The documents the contract is checked against, by path relative to `root`."""
    return {path: (root / path).read_text(encoding="utf-8") for path in (PROTOCOL_DOC, EVENTS_DOC, HTTP_DOC)}


def main(argv: list[str] | None = None) -> int:
    """`--write`: rewrite the generated blocks; `--check`: list where documents and code differ (exit 1)."""
    parser = argparse.ArgumentParser(prog="python -m stream.server.contract", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the generated blocks of the documents")
    parser.add_argument("--check", action="store_true", help="list where the documents differ from the code")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose docs/ to read")
    args = parser.parse_args(argv)
    if args.write:
        docs = read_docs(args.root)
        for (path, name), render in BLOCKS.items():
            docs[path] = write(docs[path], name, render())
        for path, text in docs.items():
            (args.root / path).write_text(text, encoding="utf-8")
    problems = check(read_docs(args.root))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems and (args.check or args.write) else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["BLOCKS", "check", "close_table", "error_table", "field_problems", "http_error_table", "main", "read_docs",
           "status_table", "write"]
