"""emostream live server — placeholder until the live-server work lands.

The streaming engine it will serve is ready: see `stream.analyzer.StreamCore` (sans-I/O) and
`emostream analyze` for files.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Explain that the live server is not built yet."""
    print(
        "emostream: the live WebSocket/HTTP server is not built yet.\n"
        "Analyze recordings meanwhile with:  .venv/bin/emostream analyze FILE --granularity frame",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
