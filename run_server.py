"""Entry point: reads the settings once, wires the pieces, runs the server.

    python run_server.py [--host 127.0.0.1] [--port 8765] [--data-dir data]
        [--store sqlite|cassandra] [--shards N] [...]

Every flag (``--help``, and the README's configuration table) may also be given as an
environment variable TREASURE_<FLAG>.
"""

from __future__ import annotations

import os
import sys

from server.app import run
from server.config import parse_settings
from server.logs import configure


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ)
    configure(settings.log_level, settings.log_format)
    run(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
