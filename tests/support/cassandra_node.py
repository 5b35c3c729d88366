"""A local Cassandra node for tests, started and stopped through ``scripts/cassandra``.

``cassandra_node`` is a session fixture: the node starts (on free ports, in a
fresh directory) the first time a test asks for it and is stopped at the end of
the session. Without java or mvn the tests that need it are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cassandra"
MISSING_TOOLS = 3
INSTALL_HINT = (
    "Cassandra tests need Java 17 and Maven (used once to fetch the jars): "
    "apt-get install openjdk-17-jre-headless maven"
)


class NodeToolsMissing(RuntimeError):
    """java or mvn is not installed."""


@dataclass
class CassandraNode:
    """A node in its own directory; it keeps its native port across restarts."""

    directory: Path
    durable_system: bool = False  # see scripts/cassandra.d/node.py UNSAFE_SYSTEM
    port: int = 0
    pid: int = 0
    startup_seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args, "--dir", str(self.directory)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    def start(self) -> None:
        args = ["start"]
        if self.port:
            args += ["--port", str(self.port)]
        if self.durable_system:
            args.append("--durable-system")
        proc = self._run(*args)
        self.log.append(proc.stdout + proc.stderr)
        if proc.returncode == MISSING_TOOLS:
            raise NodeToolsMissing(f"{INSTALL_HINT}\n{proc.stderr.strip()}")
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/cassandra start failed:\n{proc.stdout}\n{proc.stderr}")
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if line[:1].isupper())
        self.port = int(values["PORT"])
        self.pid = int(values["PID"])
        self.startup_seconds = float(values["STARTUP_SECONDS"])

    def stop(self, *, kill: bool = False) -> None:
        """Stops the node (``kill``: SIGKILL at once, as a crash would)."""
        proc = self._run("stop", *(["--kill"] if kill else []))
        self.log.append(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/cassandra stop failed:\n{proc.stdout}\n{proc.stderr}")

    def is_running(self) -> bool:
        return self._run("status").returncode == 0


def tools_missing() -> str | None:
    cached = (ROOT / ".cache" / "cassandra" / "lib" / ".complete").exists()
    if shutil.which("java") is None or (shutil.which("mvn") is None and not cached):
        return INSTALL_HINT
    return None


def start_or_skip(node: CassandraNode) -> CassandraNode:
    """Start the node, or skip the test with how to get Java and Maven."""
    reason = tools_missing()
    if reason is not None:
        pytest.skip(reason)
    try:
        node.start()
    except NodeToolsMissing as exc:
        pytest.skip(str(exc))
    return node


@pytest.fixture(scope="session")
def cassandra_node() -> Iterator[CassandraNode]:
    given = os.environ.get("CASSANDRA_NODE_DIR")
    directory = Path(given) if given else Path(tempfile.mkdtemp(prefix="cassandra-node-"))
    node = start_or_skip(CassandraNode(directory))
    try:
        yield node
    finally:
        node.stop()
        if not given:
            shutil.rmtree(directory, ignore_errors=True)
