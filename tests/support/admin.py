"""Helpers for the admin tests: a short live game, the console, HTTP with the token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from server.client import GameClient, quick_client
from tests.support.server_harness import ROOT, ServerProcess

CLUES = [
    {"text": "Capital of France?", "answer": "Paris", "points": 10},
    {"text": "Capital of Italy?", "answer": "Rome", "points": 5},
]


@dataclass
class Game:
    organizer: GameClient
    players: list[GameClient]
    hunt: str
    sent: dict[str, int] = field(default_factory=dict)  # command type -> count

    async def close(self) -> None:
        for c in [self.organizer, *self.players]:
            await c.close()


async def play(url: str, players: int = 2, *, finish: bool = False) -> Game:
    """An organizer and players in a running hunt; every player solves clue 0."""
    sent: dict[str, int] = {"hello": players + 1}
    organizer = await quick_client(url, "Olga")
    created = await organizer.request("create_hunt", name="Admin test", clues=CLUES)
    hunt = created["hunt_id"]
    clients = [await quick_client(url, f"P{i}") for i in range(players)]
    for c in clients:
        assert (await c.request("join_hunt", hunt_id=hunt))["t"] == "ok"
    assert (await organizer.request("start_hunt", hunt_id=hunt))["t"] == "ok"
    for c in clients:
        reply = await c.request("submit_answer", hunt_id=hunt, clue=0, answer="paris")
        assert reply["correct"] is True
    sent.update(create_hunt=1, join_hunt=players, start_hunt=1, submit_answer=players)
    if finish:
        for c in clients:
            await c.request("submit_answer", hunt_id=hunt, clue=1, answer="rome")
        sent["submit_answer"] += players
    await organizer.wait_event(hunt, 2 + 2 * players + (players + 1 if finish else 0))
    return Game(organizer, clients, hunt, sent)


def console(server: ServerProcess, *args: str, token: str | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "server.admin", "--url", server.admin_url]
    cmd += ["--token", token if token is not None else server.admin_token(), *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def run_console(
    server: ServerProcess, *args: str, token: str | None = None
) -> tuple[int, str, str]:
    proc = console(server, *args, token=token)
    out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    return proc.returncode, out, err


async def console_json(server: ServerProcess, *args: str) -> Any:
    code, out, err = await run_console(server, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def http(
    url: str, token: str | None, method: str = "GET", body: bytes | None = None
) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: ServerProcess) -> Samples:
    status, body, headers = await asyncio.to_thread(
        http, f"{server.admin_url}/metrics", server.admin_token()
    )
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def until_gauge(
    server: ServerProcess, name: str, value: float, timeout_s: float = 10
) -> None:
    """Closes are noticed by the server after the client's close returns: poll, bounded."""
    async with asyncio.timeout(timeout_s):
        while total(await scrape(server), name) != value:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.05)
