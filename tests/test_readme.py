"""The README's configuration table is the server's flags: the same names, the same defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path

from server.config import build_parser, parse_settings

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(--[a-z0-9-]+)` \| ([^|]+) \|")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
MACHINE_DEFAULTS = {"--shards": "CPU cores"}  # the default depends on the machine


def table(readme: str) -> dict[str, str]:
    """Flag -> default cell of the rows of the README's "Configuration" section."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            assert m[1] not in rows, f"{m[1]} has two rows"
            rows[m[1]] = m[2].strip()
    return rows


def shown(value: object) -> str:
    """A default as the table writes it."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_the_table_has_a_row_for_every_flag_of_the_server_and_no_other() -> None:
    flags = set(FLAG.findall(build_parser().format_help())) - {"--help"}
    assert set(table(README.read_text())) == flags


def test_the_table_gives_every_flag_the_default_the_server_takes() -> None:
    settings = parse_settings([], {})
    expected = {
        flag: MACHINE_DEFAULTS.get(flag) or shown(getattr(settings, flag[2:].replace("-", "_")))
        for flag in table(README.read_text())
    }
    assert table(README.read_text()) == expected
    assert settings.shards == (os.cpu_count() or 1)
