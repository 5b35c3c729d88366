"""The bot load tester (``python -m server.bots``) against a real server, and
against a deliberately broken one whose faults it must catch."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.asyncio.server import ServerConnection, serve

from server.bots import baseline
from server.bots.runner import is_loopback
from server.bots.worker import Spec, shares
from tests.support.server_harness import ROOT, ServerProcess


async def run_bots(url: str, report: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    cmd = [sys.executable, "-m", "server.bots", "--url", url, "--json", str(report), *args]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    rc = proc.returncode
    assert rc is not None
    return rc, json.loads(await asyncio.to_thread(report.read_text)), out.decode()


def consistent(r: dict[str, Any]) -> None:
    cmds = r["commands"]
    assert cmds["sent"] == cmds["replies"] > 0
    assert cmds["sent"] == sum(cmds["by_type"].values())
    assert r["throughput_per_s"] > 0
    assert r["violations"] == 0, r["violation_samples"]
    assert r["latency_ms"]["count"] > 0 and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0


@pytest.mark.slow
async def test_mixed_bots_in_two_processes_against_the_real_server(
    server: ServerProcess, tmp_path: Path
) -> None:
    rc, r, out = await run_bots(
        server.url,
        tmp_path / "mixed.json",
        *("--scenario", "mixed", "--bots", "40", "--hunt-size", "4", "--procs", "2"),
        *("--ramp-up", "1", "--duration", "3", "--reconnect-every", "5"),
    )
    assert rc == 0, out
    consistent(r)
    assert r["connected_peak"] == 40
    by_type = r["commands"]["by_type"]
    assert by_type["hello"] >= 40 and by_type["resume"] > 0
    assert by_type["join_hunt"] > 0 and by_type["leave_hunt"] > 0 and by_type["submit_answer"] > 0
    assert r["counts"]["reconnects"] > 0
    assert r["events_received"] > 0 and r["fanout_ms"]["count"] > 0
    assert "latency, ms" in out and "protocol violations" in out


@pytest.mark.slow
async def test_fanout_reaches_every_bot_of_the_real_server(
    server: ServerProcess, tmp_path: Path
) -> None:
    rc, r, out = await run_bots(
        server.url,
        tmp_path / "fanout.json",
        *("--scenario", "fanout", "--bots", "30", "--ramp-up", "1", "--duration", "2"),
        *("--fanout-every", "0.2"),
    )
    assert rc == 0, out
    consistent(r)
    solved = r["fanout_by_kind_ms"]["clue_solved"]["count"]
    solves = r["commands"]["by_type"]["submit_answer"]
    assert solves > 0 and solved == solves * 32  # 30 bots, the solver, the organizer
    assert r["fanout_by_kind_ms"]["hunt_started"]["count"] == 32


# ---- a broken server -------------------------------------------------------------------


class Broken(baseline.Baseline):
    """The baseline, but it answers its 10th command twice and never sends seq 4
    of any hunt (it still counts it)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0

    async def handle(self, ws: ServerConnection) -> None:
        player: list[str] = []
        async for frame in ws:
            reply = msgpack.packb(self.reply(ws, player, frame))
            self.answered += 1
            await ws.send(reply)
            if self.answered == 10:
                await ws.send(reply)


@pytest.fixture
async def broken_url(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    emit = baseline.Hunt.emit

    def lossy(self: baseline.Hunt, kind: str, data: dict[str, Any]) -> None:
        if len(self.frames) == 3:  # this is seq 4: store it, send it to nobody
            subscribers, self.subscribers = self.subscribers, set()
            emit(self, kind, data)
            self.subscribers = subscribers
        else:
            emit(self, kind, data)

    monkeypatch.setattr(baseline.Hunt, "emit", lossy)
    async with serve(Broken().handle, "127.0.0.1", 0, compression=None) as srv:
        yield f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"


async def test_the_bots_catch_a_lost_event_and_a_second_reply(
    broken_url: str, tmp_path: Path
) -> None:
    rc, r, out = await run_bots(
        broken_url,
        tmp_path / "broken.json",
        *("--scenario", "churn", "--bots", "4", "--ramp-up", "0", "--duration", "1.5"),
    )
    assert rc == 1, out
    samples = "\n".join(r["violation_samples"])
    assert r["violations"] >= 2
    assert "second reply" in samples
    assert "seq 5 after 3" in samples


# ---- small pieces ----------------------------------------------------------------------


def test_only_loopback_hosts_unless_allowed() -> None:
    assert is_loopback("ws://127.0.0.1:8765/") and is_loopback("ws://localhost:1/")
    assert is_loopback("ws://[::1]:8765/")
    assert not is_loopback("ws://10.0.0.1:8765/") and not is_loopback("ws://example.com/")


async def test_a_remote_url_is_refused(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.bots", "--url", "ws://192.0.2.1:8765/", cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"--allow-remote" in err


def test_play_groups_never_straddle_two_processes() -> None:
    spec = Spec("ws://127.0.0.1:1/", "play", 95, 0, 0, 1, 10, 0.0)
    ranges = shares(spec, 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 95
    assert all(lo % 10 == 0 for lo, _ in ranges)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
