"""The SQLite store cannot write (another process holds its lock): clients get
``unavailable`` within the documented time, nothing is half-applied, and the
server recovers by itself when the store does."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from server.client import quick_client
from tests.support.server_harness import start_server, stop_server

BUSY_TIMEOUT_S = 5.0  # SqliteEventStore's default
REQUEST_TIMEOUT_S = 10.0  # the gateway answers unavailable by then at the latest


def partition_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data").glob("events*.sqlite3"))


async def test_a_store_that_cannot_write_answers_unavailable_then_recovers(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path / "data")
    org = await quick_client(srv.url, "org")
    player = await quick_client(srv.url, "player")
    try:
        clues = [{"text": "t", "answer": "yes", "points": 7}]
        hunt = (await org.request("create_hunt", name="h", clues=clues))["hunt_id"]
        await player.request("join_hunt", hunt_id=hunt)
        await org.request("start_hunt", hunt_id=hunt)

        # every partition file (one per shard) is locked by another process
        blockers = [sqlite3.connect(f, isolation_level=None) for f in partition_files(tmp_path)]
        assert blockers
        for blocker in blockers:
            blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        failed = await player.request("submit_answer", "a1", hunt_id=hunt, clue=0, answer="yes")
        waited = time.monotonic() - started
        assert failed["code"] == "unavailable"
        assert waited < REQUEST_TIMEOUT_S + 2, f"waited {waited:.1f}s for unavailable"
        assert (await player.request("ping"))["t"] == "ok"  # the connection is fine
        for blocker in blockers:
            blocker.execute("ROLLBACK")
            blocker.close()

        ok = await player.request("submit_answer", "a1", hunt_id=hunt, clue=0, answer="yes")
        assert ok == {"t": "ok", "re": "a1", "correct": True, "points": 7, "score": 7}
        again = await player.request("submit_answer", "a1", hunt_id=hunt, clue=0, answer="yes")
        assert again == ok
        view = (await org.request("get_hunt", hunt_id=hunt))["hunt"]
        assert view["players"][0]["score"] == 7 and view["status"] == "finished"
        assert org.violations == [] and player.violations == []
    finally:
        await org.close()
        await player.close()
        stop_server(srv)
    assert srv.pids() == []
