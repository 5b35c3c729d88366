"""Group commit on a real server: commands that reach a shard together share one append."""

from __future__ import annotations

import asyncio
import os
import signal

from server.client import GameClient, quick_client
from tests.support.admin import CLUES, scrape, total
from tests.support.server_harness import ServerProcess, shard_pids


async def test_commands_waiting_for_a_busy_shard_are_committed_together(
    server: ServerProcess,
) -> None:
    clients: list[GameClient] = await asyncio.gather(
        *(quick_client(server.url, f"g{i}") for i in range(40))
    )
    shards = shard_pids(server)
    try:
        before = total(await scrape(server), "treasure_append_seconds_count")
        for pid in shards:  # as if each were busy with a long commit
            os.kill(pid, signal.SIGSTOP)
        try:
            creating = [
                asyncio.create_task(c.request("create_hunt", name=f"h{i}", clues=CLUES))
                for i, c in enumerate(clients)
            ]
            # The gateway answers ping itself, after the frames before it: once every
            # client has its pong, all 40 commands are in the shards' channels or held
            # by the gateway for the shard's answer to the batch before them.
            pongs = await asyncio.gather(*(c.request("ping") for c in clients))
            assert all("server_time" in p for p in pongs) and not any(t.done() for t in creating)
        finally:
            for pid in shards:
                os.kill(pid, signal.SIGCONT)
        created = await asyncio.wait_for(asyncio.gather(*creating), 20)
        assert all(r["t"] == "ok" for r in created), created
        appends = total(await scrape(server), "treasure_append_seconds_count") - before
        # Not one per command. At most two per shard: what the gateway wrote before the
        # shard answered (read at once when it resumes) and what it held until that answer.
        assert 1 <= appends <= 2 * len(shards), appends
    finally:
        await asyncio.gather(*(c.close() for c in clients))
