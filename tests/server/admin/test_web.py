"""The read-only web view in a real headless Chromium (Debian's, installed here when missing)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.admin import http, play
from tests.support.server_harness import ServerProcess, free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root."""
    if not os.path.exists(CHROMIUM):
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip(
                f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, timeout=900)
    return CHROMIUM


@contextlib.contextmanager
def browser(chromium: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # Its singleton socket's directory too, which a killed Chromium leaves behind.
            env={**os.environ, "TMPDIR": profile},
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started: chromium's helpers
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.ids = ws, itertools.count(1)

    async def call(self, method: str, **params: Any) -> Any:
        cid = next(self.ids)
        await self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == cid:
                return msg.get("result")

    async def text(self) -> str:
        result = await self.call(
            "Runtime.evaluate", expression="document.body.innerText", returnByValue=True
        )
        return str(result["result"].get("value", ""))

    async def wait_for(self, *needles: str, within_s: float = 10.0) -> str:
        text = ""
        for _ in range(int(within_s / 0.1)):
            text = await self.text()
            if all(n in text for n in needles):
                return text
            await asyncio.sleep(0.1)
        raise AssertionError(f"{needles} not on the page:\n{text}")


@contextlib.asynccontextmanager
async def open_page(chromium: str, url: str) -> AsyncIterator[Page]:
    port = free_port()
    with browser(chromium, f"--remote-debugging-port={port}", url):
        target = None
        for _ in range(100):
            with contextlib.suppress(OSError):
                listing = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/json/list")
                target = next((t for t in listing if t["type"] == "page"), None)
                if target is not None:
                    break
            await asyncio.sleep(0.1)
        assert target is not None, "chromium did not open a page"
        async with connect(target["webSocketDebuggerUrl"], max_size=2**24) as ws:
            yield Page(ws)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def test_the_page_shows_a_hunt_appear_live(server: ServerProcess, chromium: str) -> None:
    token = server.admin_token()
    async with open_page(chromium, f"{server.admin_url}/?token={token}") as page:
        first = await page.wait_for("Active hunts", "shard 1", "updated")
        game = await play(server.url, players=2)
        try:
            assert game.hunt not in first
            text = await page.wait_for(game.hunt, "P0 10", "running")
            assert "Admin test" in text
            await page.call("Page.navigate", url=f"{server.admin_url}/entity/{game.hunt}")
            text = await page.wait_for("Stored events", "hunt_started", "clue_solved")
            assert '"organizer"' in text and "snapshot seq" in text
        finally:
            await game.close()


async def test_the_page_is_refused_without_the_token(server: ServerProcess, chromium: str) -> None:
    with browser(chromium, "--dump-dom", f"{server.admin_url}/") as proc:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    dom = out.decode()
    assert "401" in dom and "admin token required" in dom and "Active hunts" not in dom
    status, body, _ = await asyncio.to_thread(http, f"{server.admin_url}/?token=wrong", None)
    assert status == 401 and "Active hunts" not in body


def test_token_in_the_address_becomes_a_cookie(server: ServerProcess) -> None:
    req = urllib.request.Request(f"{server.admin_url}/?token={server.admin_token()}")
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(req, timeout=10)
    assert info.value.code == 303
    cookie = info.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and info.value.headers["Location"] == "/"
    info.value.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
