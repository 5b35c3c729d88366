"""The gateway's per-turn writer: every connection that queued frames is written once."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from server.gateway.connection import Connection, Flusher


class FakeConnection:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail
        self.remote = name

    def _flush(self) -> None:
        self.log.append(self.name)
        if self.fail:
            raise RuntimeError("broken transport")


async def test_one_callback_writes_every_connection_of_the_turn_even_past_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flusher, written = Flusher(), []
    conns = [FakeConnection("a", written), FakeConnection("b", written, fail=True)]
    conns.append(FakeConnection("c", written))
    loop = asyncio.get_running_loop()
    ready_before = len(loop._ready)  # type: ignore[attr-defined]
    for conn in conns:
        flusher.add(cast(Connection, conn))
    assert len(loop._ready) == ready_before + 1  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert written == ["a", "b", "c"]
    assert "writing to b failed" in caplog.text
    flusher.add(cast(Connection, conns[0]))  # a later turn gets its own callback
    await asyncio.sleep(0)
    assert written == ["a", "b", "c", "a"]
