"""``/metrics`` scraped while clients play: the counters move exactly as the clients did."""

from __future__ import annotations

import asyncio

from server.client import GameClient
from tests.support.admin import http, play, scrape, total, until_gauge
from tests.support.server_harness import ServerProcess


async def test_counters_follow_what_the_clients_did(server: ServerProcess) -> None:
    before = await scrape(server)
    players = 4
    game = await play(server.url, players=players, finish=True)
    try:
        after = await scrape(server)
        assert total(after, "treasure_connections") == players + 1
        for t, count in game.sent.items():
            delta = total(after, "treasure_commands_total", type=t) - total(
                before, "treasure_commands_total", type=t
            )
            assert delta == count, t
            ok = total(after, "treasure_replies_total", type=t, outcome="ok") - total(
                before, "treasure_replies_total", type=t, outcome="ok"
            )
            assert ok == count, t
            timed = total(after, "treasure_command_seconds_count", type=t) - total(
                before, "treasure_command_seconds_count", type=t
            )
            assert timed == count, t

        hunt_events = 1 + players + 1 + 2 * players + 1  # created, joins, started, solves, end
        player_events = players + 1  # registrations
        appended = total(after, "treasure_events_appended_total") - total(
            before, "treasure_events_appended_total"
        )
        assert appended == hunt_events + player_events
        assert len(game.organizer.hunts[game.hunt].events) == hunt_events

        assert total(after, "treasure_shard_up") == 2
        assert total(after, "treasure_active_entities", kind="hunt") >= 1
        assert total(after, "treasure_active_entities", kind="player") >= players + 1
        batches = total(after, "treasure_shard_batches_total")
        assert total(after, "treasure_shard_batch_size_count") == batches > 0
        assert total(after, "treasure_shard_batch_size_bucket", le="+Inf") == batches
        appends = total(after, "treasure_append_seconds_count")
        assert appends >= 1 and total(after, "treasure_append_seconds_sum") > 0
        assert total(after, "treasure_store_errors_total") == 0
        assert total(after, "treasure_activations_total") >= players + 2
        assert ("treasure_slow_clients_dropped_total", ()) in after
    finally:
        await game.close()


async def test_the_lobby_gauge_counts_connections_not_yet_past_hello(
    server: ServerProcess,
) -> None:
    before = total(await scrape(server), "treasure_lobby_connections")
    waiting = [GameClient(server.url, name=f"w{i}") for i in range(3)]
    try:
        for c in waiting:
            await c.connect()
        assert total(await scrape(server), "treasure_lobby_connections") == before + 3
        await waiting[0].hello()
        assert total(await scrape(server), "treasure_lobby_connections") == before + 2
    finally:
        for c in waiting:
            await c.close()
    await until_gauge(server, "treasure_lobby_connections", before)


async def test_metrics_need_the_token(server: ServerProcess) -> None:
    for token in (None, "wrong"):
        status, body, headers = await asyncio.to_thread(http, f"{server.admin_url}/metrics", token)
        assert status == 401 and "treasure_" not in body
        assert headers["WWW-Authenticate"].startswith("Bearer")
