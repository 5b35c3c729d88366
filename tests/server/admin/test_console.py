"""The admin console against a real server with live games: one-shot, errors, a pty session."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from actors.placement import shard_for
from tests.support.admin import console_json, play, run_console
from tests.support.server_harness import ROOT, ServerProcess, free_port

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[=>]|\r")


async def test_one_shot_json_shows_what_the_clients_did(server: ServerProcess) -> None:
    game = await play(server.url, players=2)
    try:
        rows = await console_json(server, "actors", "--type", "hunt", "--sort", "msgs")
        (hunt,) = [r for r in rows if r["id"] == game.hunt]
        assert hunt["status"] == "running" and hunt["players"] == 2
        assert hunt["version"] == 6  # created, 2 joined, started, 2 solved
        commands_to_hunt = 1 + 2 + 1 + 2  # create, joins, start, answers (+ subscribes)
        assert hunt["messages"] >= commands_to_hunt
        assert {p["name"]: p["score"] for p in hunt["leaderboard"]} == {"P0": 10, "P1": 10}

        seen = [e["kind"] for e in game.organizer.hunts[game.hunt].events]
        stored = await console_json(server, "events", game.hunt)
        assert [e["type"] for e in stored["events"]] == seen
        later = await console_json(server, "events", game.hunt, "--after", "4", "--limit", "1")
        assert [e["seq"] for e in later["events"]] == [5]

        shards = await console_json(server, "shards")
        pids = {shards["director"]["pid"], *(s["pid"] for s in shards["shards"])}
        assert pids <= set(server.pids())
        assert all(s["up"] and s["backlog_bytes"] == 0 for s in shards["shards"])  # all read
        assert shards["gateway"]["players_online"] >= 3
        assert shards["gateway"]["channels_up"] == list(range(len(shards["shards"])))
        assert shards["gateway"]["accepted"] >= shards["gateway"]["connections"] >= 3
        assert shards["gateway"]["accept_queue"] == 0

        player = game.players[0].player_id
        inspected = await console_json(server, "inspect", player)
        assert inspected["hunts"] == [game.hunt]
        assert inspected["connections_here"] == 1 and inspected["mailbox"]["depth"] == 0
    finally:
        await game.close()


async def test_actions_passivate_inspect_end_and_kick(server: ServerProcess) -> None:
    game = await play(server.url, players=1)
    try:
        done = await console_json(server, "passivate", game.hunt)
        assert done["passivated"] is True and done["snapshot_seq"] == 4
        inspected = await console_json(server, "inspect", game.hunt)
        assert inspected["activated_now"] is True and inspected["version"] == 4
        assert inspected["snapshot_seq"] == 4
        code, out, _ = await run_console(server, "inspect", game.hunt)
        assert code == 0 and "seq" in out and game.hunt in out

        ended = await console_json(server, "end-hunt", game.hunt)
        assert ended["t"] == "ok"
        finished = await game.players[0].wait_event(game.hunt, 5)
        assert finished["data"]["reason"] == "ended_by_admin"
        code, _, err = await run_console(server, "end-hunt", game.hunt)
        assert code == 1 and "409: cannot end" in err and "finished" in err

        snap = await console_json(server, "snapshot", game.hunt)
        assert snap["snapshot_seq"] == 5

        victim = game.players[0]
        kicked = await console_json(server, "kick", victim.player_id, "--reason", "cheating")
        assert kicked["closed"] == 1
        for _ in range(50):
            if victim.closed is not None:
                break
            await asyncio.sleep(0.05)
        assert victim.closed == (4000, "cheating")
        assert server.log_has(f"admin action kick {victim.player_id} by tok-")
    finally:
        await game.close()


async def test_clear_messages_for_what_goes_wrong(server: ServerProcess) -> None:
    code, _, err = await run_console(server, "shards", token="not-the-token")
    assert code == 1 and "401: wrong admin token" in err
    code, _, err = await run_console(server, "inspect", "hnosuchhunt")
    assert code == 1 and "404: unknown id 'hnosuchhunt'" in err
    code, _, err = await run_console(server, "inspect", "banana")
    assert code == 1 and "hunt ids start with h" in err
    port = free_port()
    argv = [
        "-m",
        "server.admin",
        "--url",
        f"http://127.0.0.1:{port}",
        "--token",
        "x",
        "shards",
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, raw = await proc.communicate()
    stderr = raw.decode()
    assert proc.returncode == 1
    assert f"cannot reach the admin endpoint at http://127.0.0.1:{port}" in stderr


async def test_a_shard_that_does_not_answer_is_named(server: ServerProcess) -> None:
    shards = await console_json(server, "shards")
    stuck = shards["shards"][1]["pid"]
    player = next(f"p{i}" for i in range(100) if shard_for("player", f"p{i}", 2) == 1)
    os.kill(stuck, signal.SIGSTOP)
    try:
        code, _, err = await run_console(server, "inspect", player)
        assert code == 1 and "503: shard 1 did not answer within 3 s" in err
        shards = await console_json(server, "shards")
        assert shards["shards"][1]["up"] is False and shards["shards"][0]["up"] is True
    finally:
        os.kill(stuck, signal.SIGCONT)
    shards = await console_json(server, "shards")  # its late answers are not taken for new ones
    assert [s["index"] for s in shards["shards"]] == [0, 1]
    assert all(s["up"] for s in shards["shards"])


class Pty:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, pattern: str, timeout_s: float = 15.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if re.search(pattern, ANSI.sub("", self.seen)):
                text, self.seen = ANSI.sub("", self.seen), ""
                return text
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    break
        raise AssertionError(f"no {pattern!r} in:\n{ANSI.sub('', self.seen)[-2000:]}")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


async def test_interactive_session_through_a_pty(server: ServerProcess, tmp_path: Path) -> None:
    game = await play(server.url, players=1)
    history = tmp_path / "history"
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "COLUMNS": "220"}
    env.update(TREASURE_ADMIN_HISTORY=str(history), TREASURE_ADMIN_TOKEN=server.admin_token())
    term = Pty([sys.executable, "-m", "server.admin", "--url", server.admin_url], env)
    try:
        term.expect("admin>")
        term.send("actors --type hunt\r")
        shown = term.expect(r"active entities[\s\S]*admin>")
        assert game.hunt in shown and "running, 1 players" in shown, shown
        term.send("inspe\t")  # tab completes the command
        term.expect("inspect")
        term.send(f" {game.hunt}\r")
        shown = term.expect(r"state as the actor holds it[\s\S]*admin>")
        assert "snapshot seq" in shown and '"score": 10' in shown
        term.send("events hzzzz\r")
        assert "404: unknown id 'hzzzz'" in term.expect(r"unknown id[\s\S]*admin>")
        term.send("top --count 2 --interval 0.2\r")
        assert "shard 1" in term.expect(r"refresh every[\s\S]*refresh every[\s\S]*admin>")
        term.send("exit\r")
        await asyncio.to_thread(term.proc.wait, 10)
        assert term.proc.returncode == 0
        lines = history.read_text()
        assert f"inspect {game.hunt}" in lines and "actors --type hunt" in lines
    finally:
        term.close()
        await game.close()
