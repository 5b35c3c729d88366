"""A real server in a subprocess (``run_server.py`` on port 0) for end-to-end tests.

Every process of the server (main, Thespian admin, logger, Director, shards)
is forked from the main one and shares its command line, which names this
server's unique data directory: that is how tests find and check them all.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from server.procs import alive, children, pids_listening_on

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"ready at (wss?://[\d.]+:(\d+)/)")
ADMIN = re.compile(r"admin endpoint at (http://[\d.]+:\d+)/")


def ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def shard_pids(srv: ServerProcess) -> list[int]:
    """Shards are the admin's grandchildren (admin -> Director -> ShardHost)."""
    admins = [p for p in pids_listening_on(srv.admin_port) if ppid(p) == 1]
    assert len(admins) == 1, f"admin of {srv.admin_port}: {pids_listening_on(srv.admin_port)}"
    return sorted(g for c in children(admins[0]) for g in children(c) if alive(g))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "run_server.py" in cmdline and marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str, shards: int = 2) -> None:
        self.data_dir = data_dir
        self.args: list[str] = list(args)
        self.shards = shards
        self.admin_port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0
        self.admin_url = ""
        self.lines: list[str] = []

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        cmd = [
            sys.executable,
            "run_server.py",
            "--port",
            "0",
            "--admin-port",
            str(self.admin_port),
            "--data-dir",
            str(self.data_dir),
            "--shards",
            str(self.shards),
            "--admin-http-port",
            "0",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        ready = threading.Event()
        threading.Thread(target=self._drain, args=(ready,), daemon=True).start()
        if not ready.wait(timeout_s) or not self.url:
            self.kill_all()
            raise RuntimeError("server did not become ready:\n" + "\n".join(self.lines[-30:]))
        return self

    def _drain(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            admin = ADMIN.search(line)
            if admin:
                self.admin_url = admin.group(1)
            m = READY.search(line)
            if m and not ready.is_set():
                self.url, self.port = m.group(1), int(m.group(2))
                ready.set()
        ready.set()

    def admin_token(self) -> str:
        """The token the server generated into its data directory on first start."""
        return (self.data_dir / "admin-token").read_text().strip()

    def pids(self) -> list[int]:
        return pids_with(str(self.data_dir))

    def wait_for_pids(self, count: int, timeout_s: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"expected {count} server processes, found {self.pids()}")

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            self.close_pipe()

    def wait_gone(self, timeout_s: float = 15.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.pids()

    def close_pipe(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def log_has(self, pattern: str) -> bool:
        return any(pattern in line for line in self.lines)


def start_server(data_dir: Path, *args: str, shards: int = 2) -> ServerProcess:
    return ServerProcess(data_dir, *args, shards=shards).start()


def stop_server(server: ServerProcess, extra: Sequence[int] = ()) -> None:
    """Stop gracefully; kill whatever is left (a test then fails on its own check)."""
    try:
        server.terminate()
    finally:
        server.wait_gone()
        server.kill_all()
        server.close_pipe()
