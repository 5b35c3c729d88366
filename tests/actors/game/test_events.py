"""Events as versioned records: round trips, the stored form, and upcasting old versions."""

from __future__ import annotations

from typing import Any

import pytest

from actors.game import events as ev
from actors.game.events import (
    EVENT_TYPES,
    UPCASTERS,
    ClueDef,
    ClueSolved,
    Event,
    HuntCreated,
    HuntFinished,
    HuntStarted,
    PlayerJoined,
    PlayerLeft,
    PlayerRegistered,
    Reply,
    ReplyRecorded,
    from_record,
    public_data,
    to_record,
)
from persistence.codec import pack, unpack
from protocol.errors import ErrorCode
from protocol.messages import CommandId, HuntId, PlayerId

AT = 1_700_000_000_123
P1 = PlayerId("p1")
H1 = HuntId("h1")

LEADERBOARD: tuple[dict[str, Any], ...] = (
    {"player_id": "p2", "name": "Bea", "score": 17, "solved": [0, 1]},
    {"player_id": "p1", "name": "Ada", "score": 0, "solved": []},
)

SAMPLES: list[Event] = [
    HuntCreated(
        AT,
        H1,
        "The Hunt",
        PlayerId("org"),
        (
            ClueDef("sky?", 10, answer="Blue"),
            ClueDef("fountain", 7, lat=48.137, lon=11.575, radius_m=25.0),
            ClueDef("far", 1, lat=-90.0, lon=180.0, radius_m=10_000.0),
            ClueDef("int coords", 2, lat=1, lon=-2, radius_m=3),
        ),
        3600,
        12,
    ),
    HuntCreated(AT, H1, "No limits", PlayerId("org"), (ClueDef("x", 1, answer="y"),), None, None),
    PlayerJoined(AT, P1, "Ada ✨"),
    PlayerLeft(AT, P1),
    HuntStarted(AT, AT + 60_000),
    HuntStarted(AT, None),
    ClueSolved(AT, P1, 2, 5, 17),
    HuntFinished(AT, "all_solved", LEADERBOARD),
    HuntFinished(AT, "ended", ()),
    ReplyRecorded(AT, P1, CommandId("c1"), Reply()),
    ReplyRecorded(AT, P1, CommandId("c2"), Reply(with_view=True)),
    ReplyRecorded(
        AT, P1, CommandId("c3"), Reply(result={"correct": False, "points": 0, "score": 3})
    ),
    ReplyRecorded(AT, P1, CommandId("c4"), Reply(result={"hunt_id": "h9"})),
    ReplyRecorded(AT, P1, CommandId("c5"), Reply(code=ErrorCode.CONFLICT, message="full")),
    PlayerRegistered(AT, P1, "Ada", "ab" * 32),
]


def test_the_samples_cover_every_event_type() -> None:
    assert {type(e) for e in SAMPLES} == set(EVENT_TYPES.values())
    assert all(EVENT_TYPES[cls.NAME] is cls for cls in EVENT_TYPES.values())


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: Event) -> None:
    name, version, data = to_record(event)
    assert name == event.NAME
    assert version == event.VERSION
    assert "at" not in data
    back = from_record(name, version, data, event.at)
    assert back == event
    assert type(back) is type(event)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_the_stored_bytes(event: Event) -> None:
    name, version, data = to_record(event)
    stored = unpack(pack(data))
    assert from_record(name, version, stored, event.at) == event


def test_records_are_plain_data() -> None:
    plain = (type(None), bool, int, float, str)

    def check(v: Any) -> None:
        if isinstance(v, dict):
            assert all(isinstance(k, str) for k in v)
            for x in v.values():
                check(x)
        elif isinstance(v, list):
            for x in v:
                check(x)
        else:
            assert isinstance(v, plain), type(v)

    for e in SAMPLES:
        check(to_record(e)[2])


def test_reply_recorded_keeps_the_reply() -> None:
    err = ReplyRecorded(AT, P1, CommandId("c"), Reply(code=ErrorCode.FORBIDDEN, message="no"))
    _, _, data = to_record(err)
    assert data["reply"] == {"code": "forbidden", "message": "no"}
    back = from_record(*to_record(err)[:2], data, AT)
    assert isinstance(back, ReplyRecorded)
    assert isinstance(back.reply, Reply)
    assert back.reply.code == ErrorCode.FORBIDDEN
    assert not back.reply.ok

    ok = ReplyRecorded(AT, P1, CommandId("c"), Reply(result={"score": 3}, with_view=True))
    _, _, data = to_record(ok)
    assert data["reply"] == {"result": {"score": 3}, "view": True}
    back = from_record("reply_recorded", 1, data, AT)
    assert isinstance(back, ReplyRecorded)
    assert back.reply.ok
    assert back.reply.with_view
    assert dict(back.reply.result) == {"score": 3}


def test_clue_defs_are_stored_without_empty_fields() -> None:
    created = SAMPLES[0]
    assert isinstance(created, HuntCreated)
    _, _, data = to_record(created)
    assert data["clues"][0] == {"text": "sky?", "points": 10, "answer": "Blue"}
    assert data["clues"][1] == {
        "text": "fountain",
        "points": 7,
        "lat": 48.137,
        "lon": 11.575,
        "radius_m": 25.0,
    }
    back = from_record("hunt_created", 1, data, AT)
    assert isinstance(back, HuntCreated)
    assert isinstance(back.clues, tuple)
    assert all(isinstance(c, ClueDef) for c in back.clues)
    assert [c.kind for c in back.clues] == ["answer", "location", "location", "location"]


def test_the_leaderboard_comes_back_as_a_tuple_of_entries() -> None:
    fin = HuntFinished(AT, "time_up", LEADERBOARD)
    _, _, data = to_record(fin)
    assert data["leaderboard"] == [dict(e) for e in LEADERBOARD]
    back = from_record("hunt_finished", 1, unpack(pack(data)), AT)
    assert isinstance(back, HuntFinished)
    assert isinstance(back.leaderboard, tuple)
    assert back.leaderboard == LEADERBOARD
    assert back.reason == "time_up"


def test_public_data_of_hunt_created_hides_the_clues() -> None:
    created = SAMPLES[0]
    assert isinstance(created, HuntCreated)
    data = public_data(created)
    # the shard passes the stored record along (made once per event): it is ignored here
    assert public_data(created, to_record(created)[2]) == data
    assert data == {
        "hunt_id": H1,
        "name": "The Hunt",
        "organizer": "org",
        "clue_count": 4,
        "duration_s": 3600,
        "max_players": 12,
    }


@pytest.mark.parametrize(
    "event",
    [e for e in SAMPLES if isinstance(e, PlayerJoined | PlayerLeft | HuntStarted | ClueSolved)]
    + [SAMPLES[7]],
    ids=lambda e: type(e).__name__,
)
def test_public_data_of_other_hunt_events_is_their_data(event: Any) -> None:
    record = to_record(event)[2]
    assert public_data(event) == record
    assert public_data(event, record) is record  # made once by the shard, not twice


def test_an_upcaster_lifts_an_old_record_on_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
        d = dict(d)
        d["player_id"] = d.pop("player")
        d["name"] = d.pop("nick", "anonymous")
        return d

    monkeypatch.setitem(UPCASTERS, ("player_joined", 0), v0_to_v1)
    old = {"player": "p7", "nick": "Old Timer"}
    back = from_record("player_joined", 0, old, AT)
    assert back == PlayerJoined(AT, PlayerId("p7"), "Old Timer")
    assert old == {"player": "p7", "nick": "Old Timer"}  # the stored data is not touched
    # the current version is read as it is
    assert from_record("player_joined", 1, {"player_id": "p7", "name": "N"}, AT) == (
        PlayerJoined(AT, PlayerId("p7"), "N")
    )


def test_upcasters_chain_through_every_version(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
        seen.append(1)
        return {**d, "score": d["points"]}  # v1 had no score: it was the points

    def v2_to_v3(d: dict[str, Any]) -> dict[str, Any]:
        seen.append(2)
        d = dict(d)
        d["clue"] = d.pop("clue_no")
        return d

    monkeypatch.setattr(ClueSolved, "VERSION", 3)
    monkeypatch.setitem(UPCASTERS, ("clue_solved", 1), v1_to_v2)
    monkeypatch.setitem(UPCASTERS, ("clue_solved", 2), v2_to_v3)
    v1 = {"player_id": "p1", "clue_no": 4, "points": 9}
    assert from_record("clue_solved", 1, v1, AT) == ClueSolved(AT, P1, 4, 9, 9)
    assert seen == [1, 2]
    v2 = {"player_id": "p1", "clue_no": 4, "points": 9, "score": 30}
    assert from_record("clue_solved", 2, v2, AT) == ClueSolved(AT, P1, 4, 9, 30)
    assert seen == [1, 2, 2]
    # new records are written at the new version
    assert to_record(ClueSolved(AT, P1, 4, 9, 30))[1] == 3


def test_an_upcaster_can_lift_a_nested_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    def v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
        return {"player_id": d["player_id"], "cmd": d["cmd"], "reply": {"result": d["ok"]}}

    monkeypatch.setitem(UPCASTERS, ("reply_recorded", 0), v0_to_v1)
    back = from_record("reply_recorded", 0, {"player_id": "p1", "cmd": "c", "ok": {"a": 1}}, AT)
    assert back == ReplyRecorded(AT, P1, CommandId("c"), Reply(result={"a": 1}))


def test_a_missing_upcaster_is_an_error() -> None:
    with pytest.raises(KeyError):
        from_record("player_left", 0, {"player_id": "p1"}, AT)


def test_no_upcasters_are_registered_by_default() -> None:
    assert ev.UPCASTERS == {}


def test_an_unknown_event_name_is_an_error() -> None:
    with pytest.raises(KeyError):
        from_record("hunt_exploded", 1, {}, AT)
