"""The README's tiny client session works against a real server, as printed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.support.server_harness import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_URL = "ws://127.0.0.1:8765/"


def readme_client() -> str:
    """The first Python block of the README."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "the README has no Python example"
    assert DEFAULT_URL in block[1], "the example connects to the default address"
    return block[1]


def test_the_readme_client_creates_a_hunt_and_gets_its_first_event(server: ServerProcess) -> None:
    code = readme_client().replace(DEFAULT_URL, server.url)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    ids, event = done.stdout.splitlines()
    token, hunt = ids.split()
    pushed = ast.literal_eval(event)
    assert pushed["t"] == "event" and pushed["kind"] == "hunt_created"
    assert pushed["hunt_id"] == hunt and pushed["seq"] == 1
    assert token.split(".")[0] == pushed["data"]["organizer"]  # the token names its player
