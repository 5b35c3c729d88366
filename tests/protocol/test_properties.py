"""Properties of the codec: it never fails with anything but ``ProtocolError``,
applies the envelope rules of docs/protocol.md to any map, and round-trips every
server message."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import msgpack
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import protocol
from protocol import ErrorCode, ProtocolError, v1
from protocol.messages import (
    AnswerClue,
    Command,
    CreateHunt,
    Error,
    EventPush,
    Hello,
    LocationClue,
    Ok,
    Welcome,
)

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COMMAND_NAMES = sorted(v1.COMMANDS)
FIELD_NAMES = [
    "protocol", "name", "token", "clues", "duration_s", "max_players", "hunt_id", "clue",
    "answer", "lat", "lon", "after_seq", "text", "points", "radius_m",
]  # fmt: skip
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def pack(value: Any) -> bytes:
    return cast(bytes, msgpack.packb(value, use_bin_type=True))


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, UINT64_MAX)
    | st.integers(-2, 200)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(FIELD_NAMES + COMMAND_NAMES)
    | st.binary(max_size=20)
)
VALUES = st.recursive(
    LEAVES,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=10,
)


def short_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    """Strings of ``lo`` to ``hi`` characters, mostly short ones."""
    return st.text(min_size=lo, max_size=min(hi, lo + 8)) | st.sampled_from(["x" * lo, "é" * hi])


HUNT_ID = {"hunt_id": short_text(1, 64)}
CLUE_INDEX = st.integers(0, 99)
LAT = st.floats(-90, 90) | st.integers(-90, 90)
LON = st.floats(-180, 180) | st.integers(-180, 180)
POINTS = st.integers(1, 1000)
VALID_CLUE = st.fixed_dictionaries(
    {"text": short_text(1, 500), "answer": short_text(1, 100), "points": POINTS}
) | st.fixed_dictionaries(
    {"text": short_text(1, 500), "lat": LAT, "lon": LON, "points": POINTS},
    optional={"radius_m": st.floats(1, 10_000) | st.integers(1, 10_000)},
)
VALID_FIELDS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "hello": st.fixed_dictionaries(
        {"protocol": st.just(1) | st.integers(INT64_MIN, UINT64_MAX), "name": short_text(1, 32)}
    )
    | st.fixed_dictionaries(
        {"protocol": st.just(1), "token": short_text(1, 256)}, optional={"name": VALUES}
    ),
    "create_hunt": st.fixed_dictionaries(
        {"name": short_text(1, 80), "clues": st.lists(VALID_CLUE, min_size=1, max_size=4)},
        optional={"duration_s": st.integers(10, 86_400), "max_players": st.integers(1, 100_000)},
    ),
    **{
        t: st.fixed_dictionaries(HUNT_ID)
        for t in ("join_hunt", "leave_hunt", "start_hunt", "end_hunt", "get_hunt")
    },
    "submit_answer": st.fixed_dictionaries(
        {**HUNT_ID, "clue": CLUE_INDEX, "answer": short_text(1, 100)}
    ),
    "check_in": st.fixed_dictionaries({**HUNT_ID, "clue": CLUE_INDEX, "lat": LAT, "lon": LON}),
    "resume": st.fixed_dictionaries({**HUNT_ID, "after_seq": st.integers(0, 2**63 - 1)}),
    "ping": st.fixed_dictionaries({}),
}
assert set(VALID_FIELDS) == set(COMMAND_NAMES)


@st.composite
def valid_commands(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(st.sampled_from(COMMAND_NAMES))
    extra = draw(
        st.dictionaries(
            st.text(max_size=6).filter(lambda k: k not in FIELD_NAMES), VALUES, max_size=2
        )
    )
    return {**extra, "t": t, "id": draw(short_text(1, 64)), **draw(VALID_FIELDS[t])}


T_VALUES = st.sampled_from(COMMAND_NAMES) | st.sampled_from(["ok", "PING", ""]) | VALUES
ID_VALUES = short_text(1, 64) | st.sampled_from(["", "x" * 65]) | VALUES
ODD_KEYS = st.integers(INT64_MIN, UINT64_MAX) | st.binary(max_size=3) | st.none() | st.booleans()
TOP_KEYS = st.sampled_from(["t", "id", *FIELD_NAMES]) | st.text(max_size=6)


@st.composite
def command_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """Maps that are often nearly commands: a valid command with a few keys
    deleted or set to arbitrary values, or an arbitrary map; rarely with a
    non-string key."""
    if draw(st.booleans()):
        m: dict[Any, Any] = draw(valid_commands())
    else:
        m = draw(st.dictionaries(st.text(max_size=6), VALUES, max_size=3))
        m["t"] = draw(T_VALUES)
        m["id"] = draw(ID_VALUES)
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        key = draw(TOP_KEYS)
        action = draw(st.sampled_from(["delete", "set", "clue"]))
        if action == "delete":
            m.pop(key, None)
        elif action == "clue" and isinstance(m.get("clues"), list) and m["clues"]:
            clue = m["clues"][draw(st.integers(0, len(m["clues"]) - 1))]
            if isinstance(clue, dict):
                clue[
                    draw(st.sampled_from(["text", "answer", "points", "lat", "lon", "radius_m"]))
                ] = draw(VALUES)
        else:
            m[key] = draw(VALUES)
    if draw(st.sampled_from(range(10))) == 9:
        m[draw(ODD_KEYS)] = 1
    return m


def is_valid_id(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 64


def check_fields_came_from_the_map(cmd: Command, m: dict[str, Any]) -> None:
    assert (cmd.TYPE, cmd.id) == (m["t"], m["id"])
    for f in dataclasses.fields(cmd):
        got = getattr(cmd, f.name)
        if f.name == "clues":
            assert isinstance(cmd, CreateHunt)
            assert len(got) == len(m["clues"])
            for clue, raw in zip(got, m["clues"], strict=True):
                check_clue(clue, raw)
        elif got is None:
            if isinstance(cmd, Hello) and f.name == "name":
                assert cmd.token is not None or m.get("name") is None
            else:
                assert m.get(f.name) is None
        else:
            assert got == m[f.name]
            assert type(got) is not bool
            if f.name in ("lat", "lon"):
                assert type(got) is float


def check_clue(clue: AnswerClue | LocationClue, raw: dict[str, Any]) -> None:
    assert (clue.text, clue.points) == (raw["text"], raw["points"])
    if isinstance(clue, AnswerClue):
        assert clue.answer == raw["answer"]
        return
    assert (clue.lat, clue.lon) == (raw["lat"], raw["lon"])
    assert clue.radius_m == (raw["radius_m"] if raw.get("radius_m") is not None else 25.0)
    assert all(type(x) is float for x in (clue.lat, clue.lon, clue.radius_m))


# ---------------------------------------------------------------- (a) any frame


GOLDEN = [
    pack({"t": "ping", "id": "c1"}),
    pack({"t": "check_in", "id": "c1", "hunt_id": "h", "clue": 1, "lat": 1.5, "lon": -2.0}),
    pack(
        {
            "t": "create_hunt",
            "id": "c1",
            "name": "n",
            "clues": [
                {"text": "t", "answer": "a", "points": 1},
                {"text": "t", "lat": 1.0, "lon": 2.0, "radius_m": 5, "points": 2},
            ],
            "duration_s": 60,
        }
    ),
]


def decode_or_protocol_error(frame: bytes | str) -> Command | ProtocolError:
    try:
        return protocol.decode(frame)
    except ProtocolError as err:
        assert err.code in {ErrorCode.BAD_FRAME, ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TYPE}
        assert err.re is None or is_valid_id(err.re)
        assert isinstance(err.message, str)
        assert err.message
        return err


@BOUNDED
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_protocol_error(frame: bytes) -> None:
    decode_or_protocol_error(frame)


@BOUNDED
@given(st.text(max_size=200))
def test_any_text_frame_is_bad_frame(frame: str) -> None:
    result = decode_or_protocol_error(frame)
    assert isinstance(result, ProtocolError)
    assert (result.code, result.re) == (ErrorCode.BAD_FRAME, None)


@BOUNDED
@given(
    st.sampled_from(GOLDEN),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 200),
)
def test_corrupted_valid_frames_decode_or_raise_protocol_error(
    frame: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    buf = bytearray(frame)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    decode_or_protocol_error(bytes(buf[: max(cut, 1)]))
    decode_or_protocol_error(bytes(buf))


# ---------------------------------------------------------------- (b) any map


@BOUNDED
@given(command_maps())
def test_any_map_follows_the_envelope_rules(m: dict[Any, Any]) -> None:
    result = decode_or_protocol_error(pack(m))
    if not all(isinstance(k, str) for k in m):
        assert isinstance(result, ProtocolError)
        assert (result.code, result.re) == (ErrorCode.BAD_FRAME, None)
    elif not is_valid_id(m.get("id")):
        assert isinstance(result, ProtocolError)
        assert (result.code, result.re) == (ErrorCode.BAD_REQUEST, None)
    elif not isinstance(m.get("t"), str):
        assert isinstance(result, ProtocolError)
        assert (result.code, result.re) == (ErrorCode.BAD_REQUEST, m["id"])
    elif m["t"] not in COMMAND_NAMES:
        assert isinstance(result, ProtocolError)
        assert (result.code, result.re) == (ErrorCode.UNKNOWN_TYPE, m["id"])
    elif isinstance(result, ProtocolError):
        assert (result.code, result.re) == (ErrorCode.BAD_REQUEST, m["id"])
    else:
        assert result.id == m["id"]
        check_fields_came_from_the_map(result, m)


def test_the_map_strategy_reaches_every_outcome() -> None:
    def outcome(m: dict[Any, Any]) -> str:
        result = decode_or_protocol_error(pack(m))
        return result.code if isinstance(result, ProtocolError) else "command"

    quick = settings(max_examples=2_000, deadline=None, database=None, phases=[Phase.generate])
    for wanted in ("bad_frame", "bad_request", "unknown_type", "command"):
        find(command_maps(), lambda m, w=wanted: outcome(m) == w, settings=quick)


@BOUNDED
@given(valid_commands())
def test_valid_commands_decode_to_their_fields(m: dict[str, Any]) -> None:
    cmd = protocol.decode(pack(m))
    check_fields_came_from_the_map(cmd, m)


# ---------------------------------------------------------------- (c) server round trip

ints = st.integers(INT64_MIN, UINT64_MAX)
texts = st.text(max_size=30)
payload = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | texts | st.binary(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
    max_leaves=20,
)
results = st.dictionaries(texts.filter(lambda k: k not in ("t", "re")), payload, max_size=6)
server_messages = (
    st.builds(Welcome, texts, texts, texts, texts, ints)
    | st.builds(Ok, texts, results)
    | st.builds(Error, st.none() | texts, st.sampled_from(list(ErrorCode)) | texts, texts)
    | st.builds(EventPush, texts, ints, texts, ints, st.dictionaries(texts, payload, max_size=6))
)


@BOUNDED
@given(server_messages)
def test_server_messages_round_trip(msg: Welcome | Ok | Error | EventPush) -> None:
    frame = protocol.encode(msg)
    assert isinstance(frame, bytes)
    back = protocol.decode_server(frame)
    assert type(back) is type(msg)
    assert back == msg
    wire = msgpack.unpackb(frame)
    assert next(iter(wire)) == "t"
    assert wire["t"] == msg.TYPE
    if isinstance(msg, Ok):
        assert list(wire) == ["t", "re", *msg.result]


# ---------------------------------------------------------------- (d) deep nesting

DEPTH = 100_000


@pytest.mark.parametrize(
    "frame",
    [
        b"\x91" * DEPTH + b"\xc0",
        b"\x81\xa1k" * DEPTH + b"\xc0",
        b"\x83\xa1t\xa4ping\xa2id\xa2c1\xa1x" + b"\x91" * DEPTH + b"\xc0",
        b"\x83\xa1t\xa4ping\xa2id\xa2c1\xa1x" + b"\x81\xa1k" * DEPTH + b"\xc0",
        b"\x91" * DEPTH,  # deep and truncated
    ],
    ids=["arrays", "maps", "arrays-in-envelope", "maps-in-envelope", "truncated"],
)
def test_deep_nesting_is_bad_frame_not_a_crash(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frame)
    assert (info.value.code, info.value.re) == (ErrorCode.BAD_FRAME, None)


def test_moderate_nesting_in_a_field_is_judged_by_the_field() -> None:
    nested: Any = None
    for _ in range(500):
        nested = [nested]
    assert protocol.decode(pack({"t": "ping", "id": "c1", "x": nested})).id == "c1"
    hunt = {"t": "create_hunt", "id": "c2", "name": "n", "clues": [nested]}
    with pytest.raises(ProtocolError) as info:
        protocol.decode(pack(hunt))
    assert (info.value.code, info.value.re) == (ErrorCode.BAD_REQUEST, "c2")
    assert "clues[0]" in info.value.message


def test_float_special_values_never_slip_into_a_command() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        frame = pack({"t": "check_in", "id": "c", "hunt_id": "h", "clue": 0, "lat": bad, "lon": 0})
        with pytest.raises(ProtocolError):
            protocol.decode(frame)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(INT64_MIN, UINT64_MAX) | st.floats() | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@BOUNDED
@given(st.lists(st.tuples(st.dictionaries(st.text(), JSONISH, max_size=4), st.booleans())))
def test_the_shared_packer_packs_as_packb_even_after_a_failed_pack(
    values: list[tuple[dict[str, Any], bool]],
) -> None:
    """``codec.pack`` reuses one Packer: a pack that fails half-way (a value msgpack
    cannot pack) must leave nothing behind for the next."""
    from persistence import codec as store_codec

    for value, poison in values:
        for pack in (protocol.codec.pack, store_codec.pack):
            if poison:
                with pytest.raises(TypeError):
                    pack({**value, "\uffff": [1, object()]})
            assert pack(value) == msgpack.packb(value, use_bin_type=True)
