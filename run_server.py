"""Entry point: reads the settings once, wires the pieces, runs the server."""

from __future__ import annotations

import sys


def main() -> int:
    print("not yet: the playable server lands with the server issue", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
