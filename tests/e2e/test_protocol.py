"""Every command and every error code of docs/protocol.md, over real WebSockets.

One real server (SQLite, two shards) is shared by the module. After each error
the test proves the connection is still open with a ``ping``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import pytest

from tests.support.e2e import (
    ANSWER_CLUES,
    Probe,
    close_all,
    connected,
    probe,
    secrets_in,
)
from tests.support.server_harness import ServerProcess

MISSING = "hunt-that-does-not-exist"


async def still_open(c: Probe, authenticated: bool = True) -> None:
    reply = await c.request("ping")
    if authenticated:
        assert reply["t"] == "ok" and abs(reply["server_time"] - time.time() * 1000) < 5_000
    else:
        assert reply["code"] == "not_authenticated"


# ---- frames and envelopes ---------------------------------------------------------


@pytest.mark.parametrize("authenticated", [False, True])
async def test_bad_frames_get_bad_frame_with_null_re_and_keep_the_connection(
    server: ServerProcess, authenticated: bool
) -> None:
    c = await (probe(server.url, "frames") if authenticated else connected(server.url))
    try:
        bad: list[bytes | str] = [
            msgpack.packb({"t": "ping", "id": "as-text"}).hex(),  # a text frame
            b"\xc1",  # never valid msgpack
            b"\x92\x01",  # an array cut short
            msgpack.packb([{"t": "ping", "id": "in-array"}]),
            msgpack.packb("ping"),
            msgpack.packb(7),
            msgpack.packb({1: "int key", "t": "ping", "id": "k"}, strict_types=False),
        ]
        for frame in bad:
            before = len(c.frames)
            await c.send_raw(frame)
            await still_open(c, authenticated)
            errors = [m for m in c.frames[before:] if m["t"] == "error" and m["re"] is None]
            assert [m["code"] for m in errors] == ["bad_frame"], (frame, c.frames[before:])
            assert errors[0]["message"]
        pings = c.replies - (1 if authenticated else 0)  # less the hello
        assert pings == len(bad)  # nothing answered a bad frame with an id
    finally:
        await close_all(c)


async def test_messages_in_any_framing_are_answered_in_the_order_sent(
    server: ServerProcess,
) -> None:
    """Whole binary messages take a shorter path through the gateway than text or
    fragmented ones; a message sent after a fragmented one must not overtake it."""
    c = await probe(server.url, "framing")
    try:
        assert c.ws is not None
        before = len(c.frames)
        ping = [msgpack.packb({"t": "ping", "id": f"p{i}"}) for i in range(5)]
        for i in (0, 1, 2, 4):  # expected replies (p3 goes as text: no reply of its own)
            c._waiting[f"p{i}"] = asyncio.get_running_loop().create_future()
            c.sent += 1
        await c.send_raw(ping[0])
        await c.ws.send([ping[1][:3], ping[1][3:]])  # one message in two frames
        await c.send_raw(ping[2])
        await c.send_raw(ping[3].hex())  # a text frame: bad_frame
        await c.send_raw(ping[4])
        await asyncio.wait_for(await c.ws.ping(), 10)  # control frames still answered
        await c.wait_frame(lambda m: m.get("re") == "p4")
        got = [(m["t"], m.get("re")) for m in c.frames[before:]]
        assert got == [("ok", "p0"), ("ok", "p1"), ("ok", "p2"), ("error", None), ("ok", "p4")]
    finally:
        await close_all(c)


ENVELOPES: list[tuple[dict[str, Any], str | None, str, str]] = [
    ({"t": "ping"}, None, "bad_request", "id"),
    ({"t": "ping", "id": ""}, None, "bad_request", "id"),
    ({"t": "ping", "id": "x" * 65}, None, "bad_request", "id"),
    ({"t": "ping", "id": 17}, None, "bad_request", "id"),
    ({"id": "no-t"}, "no-t", "bad_request", "t"),
    ({"t": 3, "id": "int-t"}, "int-t", "bad_request", "t"),
    ({"t": "fly_away", "id": "unknown"}, "unknown", "unknown_type", "fly_away"),
]


@pytest.mark.parametrize(("m", "re", "code", "named"), ENVELOPES)
async def test_envelope_errors(
    server: ServerProcess, m: dict[str, Any], re: str | None, code: str, named: str
) -> None:
    c = await probe(server.url, "envelope")
    try:
        if re is None:
            await c.send_map(m)
            err = await c.wait_frame(lambda f: f["t"] == "error" and f["re"] is None)
        else:
            err = await c.raw_request(m)
            assert err["t"] == "error" and err["re"] == re
        assert err["code"] == code and named in err["message"], err
        await still_open(c)
    finally:
        await close_all(c)


async def test_a_64_character_id_is_valid(server: ServerProcess) -> None:
    c = await probe(server.url, "long id")
    try:
        cid = "i" * 64
        reply = await c.request("ping", cid=cid)
        assert reply["t"] == "ok" and reply["re"] == cid
    finally:
        await close_all(c)


GOOD_CLUE = {"text": "t", "answer": "a", "points": 1}
FIELD_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("create_hunt", {"clues": [GOOD_CLUE]}, "name"),
    ("create_hunt", {"name": "x" * 81, "clues": [GOOD_CLUE]}, "name"),
    ("create_hunt", {"name": 5, "clues": [GOOD_CLUE]}, "name"),
    ("create_hunt", {"name": "n"}, "clues"),
    ("create_hunt", {"name": "n", "clues": []}, "clues"),
    ("create_hunt", {"name": "n", "clues": [GOOD_CLUE] * 101}, "clues"),
    ("create_hunt", {"name": "n", "clues": ["clue"]}, "clues[0]"),
    ("create_hunt", {"name": "n", "clues": [{"answer": "a", "points": 1}]}, "clues[0].text"),
    ("create_hunt", {"name": "n", "clues": [GOOD_CLUE, {**GOOD_CLUE, "points": 0}]}, "clues[1]"),
    ("create_hunt", {"name": "n", "clues": [{"text": "t", "points": 1}]}, "clues[0]"),
    (
        "create_hunt",
        {"name": "n", "clues": [{"text": "t", "lat": float("nan"), "lon": 1, "points": 1}]},
        "clues[0].lat",
    ),
    (
        "create_hunt",
        {"name": "n", "clues": [{"text": "t", "lat": 1, "lon": float("inf"), "points": 1}]},
        "clues[0].lon",
    ),
    (
        "create_hunt",
        {"name": "n", "clues": [{"text": "t", "lat": 91, "lon": 1, "points": 1}]},
        "clues[0].lat",
    ),
    (
        "create_hunt",
        {"name": "n", "clues": [{"text": "t", "lat": 1, "lon": 1, "radius_m": 0, "points": 1}]},
        "clues[0].radius_m",
    ),
    ("create_hunt", {"name": "n", "clues": [{**GOOD_CLUE, "lat": 1, "lon": 1}]}, "clues[0]"),
    ("create_hunt", {"name": "n", "clues": [GOOD_CLUE], "duration_s": 9}, "duration_s"),
    ("create_hunt", {"name": "n", "clues": [GOOD_CLUE], "duration_s": 86_401}, "duration_s"),
    ("create_hunt", {"name": "n", "clues": [GOOD_CLUE], "duration_s": 10.5}, "duration_s"),
    ("create_hunt", {"name": "n", "clues": [GOOD_CLUE], "max_players": 0}, "max_players"),
    ("join_hunt", {}, "hunt_id"),
    ("join_hunt", {"hunt_id": 12}, "hunt_id"),
    ("leave_hunt", {"hunt_id": ""}, "hunt_id"),
    ("start_hunt", {}, "hunt_id"),
    ("end_hunt", {"hunt_id": None}, "hunt_id"),
    ("get_hunt", {}, "hunt_id"),
    ("submit_answer", {"hunt_id": "h", "clue": 0}, "answer"),
    ("submit_answer", {"hunt_id": "h", "clue": 0, "answer": ""}, "answer"),
    ("submit_answer", {"hunt_id": "h", "clue": "0", "answer": "a"}, "clue"),
    ("submit_answer", {"hunt_id": "h", "clue": True, "answer": "a"}, "clue"),
    ("check_in", {"hunt_id": "h", "clue": 0, "lon": 1}, "lat"),
    ("check_in", {"hunt_id": "h", "clue": 0, "lat": 1, "lon": 181}, "lon"),
    ("check_in", {"hunt_id": "h", "clue": 0, "lat": 1, "lon": float("-inf")}, "lon"),
    ("resume", {"hunt_id": "h"}, "after_seq"),
    ("resume", {"hunt_id": "h", "after_seq": -1}, "after_seq"),
]


@pytest.mark.parametrize(("t", "fields", "named"), FIELD_ERRORS)
async def test_field_errors_are_bad_request_naming_the_field(
    server: ServerProcess, t: str, fields: dict[str, Any], named: str
) -> None:
    c = await probe(server.url, "fields")
    try:
        reply = await c.raw_request({"t": t, "id": "field-error", **fields})
        assert reply["t"] == "error" and reply["re"] == "field-error", reply
        assert reply["code"] == "bad_request", reply
        assert reply["message"].startswith(named), reply
        await still_open(c)
    finally:
        await close_all(c)


# ---- hello ------------------------------------------------------------------------------


async def test_commands_before_hello_are_not_authenticated(server: ServerProcess) -> None:
    c = await connected(server.url, "early")
    try:
        early: list[tuple[str, dict[str, Any]]] = [
            ("ping", {}),
            ("create_hunt", {"name": "n", "clues": [GOOD_CLUE]}),
            ("join_hunt", {"hunt_id": MISSING}),
            ("resume", {"hunt_id": MISSING, "after_seq": 0}),
            ("submit_answer", {}),  # not even parsed before hello
        ]
        for t, fields in early:
            reply = await c.request(t, **fields)
            assert reply["code"] == "not_authenticated", (t, reply)
        assert (await c.hello())["t"] == "welcome"
        await still_open(c)
    finally:
        await close_all(c)


async def test_hello_field_errors(server: ServerProcess) -> None:
    c = await connected(server.url, "hello fields")
    try:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"protocol": 1}, "name"),
            ({"protocol": 1, "name": ""}, "name"),
            ({"protocol": 1, "name": "n" * 33}, "name"),
            ({"name": "n"}, "protocol"),
            ({"protocol": "1", "name": "n"}, "protocol"),
            ({"protocol": 1, "token": 5}, "token"),
        ]
        for fields, named in cases:
            reply = await c.request("hello", **fields)
            assert reply["code"] == "bad_request" and reply["message"].startswith(named), reply
        welcome = await c.request("hello", protocol=1, name="n" * 32)
        assert welcome["t"] == "welcome" and welcome["name"] == "n" * 32
        assert set(welcome) >= {"re", "player_id", "name", "token", "server_time"}
    finally:
        await close_all(c)


async def test_unknown_or_garbled_tokens_are_unauthorized(server: ServerProcess) -> None:
    known = await probe(server.url, "known")
    player, _, secret = known.token.partition(".")
    c = await connected(server.url, "guess")
    try:
        for token in [
            "garbled-without-separator",
            ".secret-without-player",
            "p" + "a" * 16 + ".no-such-player",
            f"{player}.{secret[::-1]}",  # a real player, a wrong secret
            f"{player}.",
        ]:
            reply = await c.request("hello", protocol=1, token=token)
            assert reply["t"] == "error" and reply["code"] == "unauthorized", (token, reply)
            await still_open(c, authenticated=False)
        again = await c.hello(known.token)
        assert again["t"] == "welcome" and again["player_id"] == known.player_id
        assert again["name"] == "known"
        await still_open(c)
    finally:
        await close_all(known, c)


async def test_unsupported_protocol_then_version_one(server: ServerProcess) -> None:
    c = await connected(server.url, "future")
    try:
        for version in (2, 0):
            reply = await c.request("hello", protocol=version, name="future")
            assert reply["t"] == "error" and reply["code"] == "unsupported_protocol", reply
            await still_open(c, authenticated=False)
        assert (await c.hello())["t"] == "welcome"
        await still_open(c)
    finally:
        await close_all(c)


# ---- hunt errors ------------------------------------------------------------------------


async def test_commands_on_a_missing_hunt_are_not_found(server: ServerProcess) -> None:
    c = await probe(server.url, "lost")
    try:
        missing: list[tuple[str, dict[str, Any]]] = [
            ("join_hunt", {}),
            ("leave_hunt", {}),
            ("start_hunt", {}),
            ("end_hunt", {}),
            ("get_hunt", {}),
            ("resume", {"after_seq": 0}),
            ("submit_answer", {"clue": 0, "answer": "a"}),
            ("check_in", {"clue": 0, "lat": 1.0, "lon": 2}),
        ]
        for t, fields in missing:
            reply = await c.request(t, hunt_id=MISSING, **fields)
            assert reply["t"] == "error" and reply["code"] == "not_found", (t, reply)
        await still_open(c)
    finally:
        await close_all(c)


async def test_forbidden_moves(server: ServerProcess) -> None:
    org = await probe(server.url, "organizer")
    member = await probe(server.url, "member")
    stranger = await probe(server.url, "stranger")
    try:
        hunt = (await org.request("create_hunt", name="rules", clues=ANSWER_CLUES))["hunt_id"]
        assert (await member.request("join_hunt", hunt_id=hunt))["t"] == "ok"
        refused: list[tuple[Probe, str, dict[str, Any]]] = [
            (org, "join_hunt", {}),
            (org, "submit_answer", {"clue": 0, "answer": "Berlin"}),
            (member, "start_hunt", {}),
            (member, "end_hunt", {}),
            (stranger, "start_hunt", {}),
            (stranger, "end_hunt", {}),
            (stranger, "leave_hunt", {}),
            (stranger, "resume", {"after_seq": 0}),
            (stranger, "submit_answer", {"clue": 0, "answer": "Berlin"}),
            (stranger, "check_in", {"clue": 2, "lat": 52.5163, "lon": 13.3777}),
        ]
        for phase in ("lobby", "running"):
            for who, t, fields in refused:
                reply = await who.request(t, hunt_id=hunt, **fields)
                assert reply["t"] == "error" and reply["code"] == "forbidden", (phase, t, reply)
                await still_open(who)
            if phase == "lobby":
                assert (await org.request("start_hunt", hunt_id=hunt))["t"] == "ok"
        view = (await stranger.request("get_hunt", hunt_id=hunt))["hunt"]
        assert [p["player_id"] for p in view["players"]] == [member.player_id]
        assert view["players"][0]["score"] == 0
    finally:
        await close_all(org, member, stranger)


async def test_conflicts(server: ServerProcess) -> None:
    org = await probe(server.url, "organizer")
    first = await probe(server.url, "first")
    second = await probe(server.url, "second")
    try:
        created = await org.request("create_hunt", name="small", clues=ANSWER_CLUES, max_players=1)
        hunt = created["hunt_id"]
        joined = await first.request("join_hunt", hunt_id=hunt)
        assert joined["t"] == "ok" and joined["hunt"]["max_players"] == 1
        full = await second.request("join_hunt", hunt_id=hunt)
        assert full["code"] == "conflict", full
        again = await first.request("join_hunt", hunt_id=hunt)  # joining again is no error
        assert again["t"] == "ok" and again["seq"] == joined["seq"]
        early = await first.request("submit_answer", hunt_id=hunt, clue=0, answer="Berlin")
        assert early["code"] == "conflict", early

        assert (await org.request("start_hunt", hunt_id=hunt))["t"] == "ok"
        twice = await org.request("start_hunt", hunt_id=hunt)
        assert twice["code"] == "conflict", twice
        assert (await second.request("join_hunt", hunt_id=hunt))["code"] == "conflict"

        ended = await org.request("end_hunt", hunt_id=hunt)
        assert ended == {"t": "ok", "re": ended["re"]}
        finished = await first.wait_event(hunt, 4)
        assert finished["kind"] == "hunt_finished" and finished["data"]["reason"] == "ended"
        assert [e["player_id"] for e in finished["data"]["leaderboard"]] == [first.player_id]
        finished_refusals: list[tuple[Probe, str, dict[str, Any]]] = [
            (second, "join_hunt", {}),
            (first, "join_hunt", {}),
            (first, "submit_answer", {"clue": 0, "answer": "Berlin"}),
            (first, "check_in", {"clue": 2, "lat": 52.5163, "lon": 13.3777}),
            (first, "leave_hunt", {}),
            (org, "start_hunt", {}),
            (org, "end_hunt", {}),
        ]
        for who, t, fields in finished_refusals:
            reply = await who.request(t, hunt_id=hunt, **fields)
            assert reply["t"] == "error" and reply["code"] == "conflict", (t, reply)
            await still_open(who)
        view = (await second.request("get_hunt", hunt_id=hunt))["hunt"]
        assert view["status"] == "finished"
        assert (await org.request("get_hunt", hunt_id=hunt))["seq"] == 4
    finally:
        await close_all(org, first, second)


# ---- a whole game ----------------------------------------------------------------------


EXPECTED_GAME = [
    (1, "hunt_created"),
    (2, "player_joined"),
    (3, "player_joined"),
    (4, "player_joined"),
    (5, "hunt_started"),
    (6, "clue_solved"),
    (7, "clue_solved"),
    (8, "clue_solved"),
    (9, "player_left"),
    (10, "clue_solved"),
    (11, "clue_solved"),
    (12, "clue_solved"),
    (13, "hunt_finished"),
]


async def test_a_game_with_three_players_reaches_every_client_in_order(
    server: ServerProcess,
) -> None:
    org = await probe(server.url, "organizer")
    ana, ben, cem = [await probe(server.url, n) for n in ("Ana", "Ben", "Cem")]
    everyone = [org, ana, ben, cem]
    try:
        created = await org.request("create_hunt", name="Three", clues=ANSWER_CLUES)
        hunt = created["hunt_id"]
        assert (await org.wait_event(hunt, 1))["kind"] == "hunt_created"
        await _join_three(hunt, org, [ana, ben, cem])
        await _play(hunt, org, ana, ben, cem)

        finished = await org.wait_event(hunt, 13)
        assert finished["kind"] == "hunt_finished"
        assert finished["data"]["reason"] == "all_solved"
        board = finished["data"]["leaderboard"]
        assert [(e["player_id"], e["score"]) for e in board] == [
            (ana.player_id, 35),
            (ben.player_id, 35),  # same score, last solve later
        ]
        assert sorted(board[0]["solved"]) == [0, 1, 2] and board[0]["name"] == "Ana"

        for p in (ana, ben):
            await p.wait_event(hunt, 13)
        assert org.kinds(hunt) == EXPECTED_GAME
        assert ana.kinds(hunt) == EXPECTED_GAME[2:]  # from the event after its join (seq 2)
        assert ben.kinds(hunt) == EXPECTED_GAME[3:]
        await cem.request("ping")  # whatever the gateway sent Cem before this reply is in
        assert cem.kinds(hunt)[:4] == EXPECTED_GAME[4:8]
        assert max(seq for seq, _ in cem.kinds(hunt)) <= 9  # nothing after leaving
        solved = [e["data"] for e in org.hunts[hunt].events if e["kind"] == "clue_solved"]
        assert solved[0] == {"player_id": ana.player_id, "clue": 0, "points": 10, "score": 10}
        for p in everyone:
            events = p.hunts[hunt].events
            assert all(e["hunt_id"] == hunt and isinstance(e["at"], int) for e in events)
            assert secrets_in(p.frames) == []
        resumed = await org.request("resume", hunt_id=hunt, after_seq=10)
        assert resumed["seq"] == 13 and org.kinds(hunt)[-3:] == EXPECTED_GAME[-3:]
    finally:
        await close_all(*everyone)


async def _join_three(hunt: str, org: Probe, players: list[Probe]) -> None:
    for seq, p in enumerate(players, start=2):
        joined = await p.request("join_hunt", hunt_id=hunt)
        assert joined["t"] == "ok" and joined["seq"] == seq, joined
        view = joined["hunt"]
        assert view["hunt_id"] == hunt and view["status"] == "lobby"
        assert view["organizer"] == org.player_id and view["name"] == "Three"
        assert [c["text"] for c in view["clues"]] == [None, None, None]
        assert [c["kind"] for c in view["clues"]] == ["answer", "answer", "location"]
        assert [c["points"] for c in view["clues"]] == [10, 20, 5]
        assert [c["index"] for c in view["clues"]] == [0, 1, 2]
        assert view["started_at"] is None and view["ends_at"] is None
        assert view["max_players"] is None and isinstance(view["created_at"], int)
        assert secrets_in(joined) == []
        assert p.player_id in [e["player_id"] for e in view["players"]]
    for seq, p in enumerate(players, start=2):
        ev = await org.wait_event(hunt, seq)
        assert ev["kind"] == "player_joined"
        assert ev["data"] == {"player_id": p.player_id, "name": p.name}


async def _play(hunt: str, org: Probe, ana: Probe, ben: Probe, cem: Probe) -> None:
    assert (await org.request("start_hunt", hunt_id=hunt))["t"] == "ok"
    started = await cem.wait_event(hunt, 5)
    assert started["kind"] == "hunt_started" and started["data"] == {"ends_at": None}
    running = await ben.request("get_hunt", hunt_id=hunt)
    assert running["seq"] == 5 and running["hunt"]["status"] == "running"
    assert [c["text"] for c in running["hunt"]["clues"]] == [c["text"] for c in ANSWER_CLUES]
    assert isinstance(running["hunt"]["started_at"], int)
    assert secrets_in(running) == []

    wrong = await ana.request("submit_answer", hunt_id=hunt, clue=0, answer="Bonn")
    assert wrong == {"t": "ok", "re": wrong["re"], "correct": False, "points": 0, "score": 0}
    right = await ana.request("submit_answer", hunt_id=hunt, clue=0, answer="  BERLIN ")
    assert (right["correct"], right["points"], right["score"]) == (True, 10, 10)
    twice = await ana.request("submit_answer", hunt_id=hunt, clue=0, answer="berlin")
    assert (twice["correct"], twice["points"], twice["score"]) == (True, 0, 10)
    wide = "\uff2a\uff35\uff30\uff29\uff34\uff25\uff32"  # fullwidth JUPITER, NFKC folds it
    jupiter = await ana.request("submit_answer", hunt_id=hunt, clue=1, answer=wide)
    assert (jupiter["correct"], jupiter["points"], jupiter["score"]) == (True, 20, 30)
    kind = await ana.request("submit_answer", hunt_id=hunt, clue=2, answer="gate")
    assert kind["code"] == "bad_request" and kind["message"].startswith("clue"), kind
    nowhere = await ana.request("submit_answer", hunt_id=hunt, clue=7, answer="x")
    assert nowhere["code"] == "bad_request" and nowhere["message"].startswith("clue")
    far = await ben.request("check_in", hunt_id=hunt, clue=2, lat=52.52, lon=13.3777)
    assert (far["correct"], far["points"], far["score"]) == (False, 0, 0)  # ~410 m away
    near = await ben.request("check_in", hunt_id=hunt, clue=2, lat=52.5164, lon=13.3778)
    assert (near["correct"], near["points"], near["score"]) == (True, 5, 5)

    left = await cem.request("leave_hunt", hunt_id=hunt)
    assert left == {"t": "ok", "re": left["re"], "seq": 9}  # seq: an extension, its event
    assert (await org.wait_event(hunt, 9))["data"] == {"player_id": cem.player_id}

    gate = await ana.request("check_in", hunt_id=hunt, clue=2, lat=52.5163, lon=13.3777)
    assert gate["score"] == 35
    await ben.request("submit_answer", hunt_id=hunt, clue=0, answer="Berlin")
    last = await ben.request("submit_answer", hunt_id=hunt, clue=1, answer="jupiter")
    assert last["score"] == 35
