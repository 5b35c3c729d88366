"""Bad input at the codec level: every wire error code ``decode`` can raise,
with the right ``re`` and a message that names the offending field."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any, cast

import msgpack
import pytest

import protocol
from protocol import ErrorCode, ProtocolError
from protocol.messages import AnswerClue, CreateHunt, Hello, LocationClue

ID = "cmd-42"
DELETE = object()
Path = tuple[str | int, ...]


def pack(value: Any) -> bytes:
    return cast(bytes, msgpack.packb(value, use_bin_type=True))


def names(message: str, field: str) -> bool:
    """``field`` appears in ``message`` as a whole name, not inside a longer
    one (``lat`` is not named by ``clues[1].lat``, nor ``clues[1]`` by
    ``clues[1].points``)."""
    pattern = rf"(?<![\w.\]]){re.escape(field)}(?![\w.\[])"
    return re.search(pattern, message) is not None


def rejects(frame: bytes | str, code: ErrorCode, re_: str | None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frame)
    err = info.value
    assert err.code == code, err.message
    assert err.re == re_
    assert err.message
    return err


def test_names_helper_is_strict() -> None:
    assert names("clues[1].points: must be from 1 to 1000", "clues[1].points")
    assert not names("clues[1].points: must be from 1 to 1000", "clues[0].points")
    assert not names("clues[1].points: must be from 1 to 1000", "points")
    assert not names("clues[1].points: must be from 1 to 1000", "clues[1]")
    assert not names("clues[1].lat: is required", "lat")
    assert names("lat: must be a finite number", "lat")
    assert not names("id: must be a string", "t")


# ---------------------------------------------------------------- bad_frame


@pytest.mark.parametrize(
    "text",
    ["", "ping", '{"t": "ping", "id": "c1"}', "\x82\xa1t\xa4ping\xa2id\xa2c1"],
    ids=["empty", "word", "json", "msgpack-as-text"],
)
def test_a_text_frame_is_bad_frame(text: str) -> None:
    rejects(text, ErrorCode.BAD_FRAME, None)


GOOD_PING = pack({"t": "ping", "id": "c1"})


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # the one byte msgpack never uses
        b"\xff\xff\xff",  # negative fixints: not a map, and trailing data
        GOOD_PING + b"\xc0",  # a valid map followed by extra data
        b"\x81\xa2\xff\xfe\xc0",  # str key that is not UTF-8
        b"\x82\xa1t\xa4ping\xa2id\xa2\xc3\x28",  # str value that is not UTF-8
    ],
    ids=["empty", "0xc1", "garbage", "extra-data", "bad-utf8-key", "bad-utf8-value"],
)
def test_invalid_msgpack_is_bad_frame(frame: bytes) -> None:
    rejects(frame, ErrorCode.BAD_FRAME, None)


@pytest.mark.parametrize("cut", [1, 2, 5, len(GOOD_PING) - 1])
def test_truncated_msgpack_is_bad_frame(cut: int) -> None:
    rejects(GOOD_PING[:cut], ErrorCode.BAD_FRAME, None)


def test_a_map_header_promising_more_than_the_frame_holds_is_bad_frame() -> None:
    rejects(b"\xdf\xff\xff\xff\xff", ErrorCode.BAD_FRAME, None)
    rejects(b"\xdb\xff\xff\xff\xffabc", ErrorCode.BAD_FRAME, None)


@pytest.mark.parametrize(
    "value",
    [
        [],
        [{"t": "ping", "id": "c1"}],
        0,
        -1,
        2**64 - 1,
        1.5,
        "ping",
        None,
        True,
        b"\x82\xa1t",
        msgpack.ExtType(5, b"x"),
    ],
    ids=[
        "array",
        "array-of-map",
        "int",
        "negint",
        "uint64",
        "float",
        "str",
        "nil",
        "bool",
        "bin",
        "ext",
    ],
)
def test_msgpack_that_is_not_a_map_is_bad_frame(value: Any) -> None:
    rejects(pack(value), ErrorCode.BAD_FRAME, None)


@pytest.mark.parametrize(
    "frame",
    [
        pack({1: "x"}),
        pack({b"t": b"ping", b"id": b"c1"}),
        pack({"t": "ping", "id": "c1", 5: 1}),
        pack({"t": "ping", "id": "c1", None: 1}),
        pack({"t": "ping", "id": "c1", True: 1}),
        pack({"t": "ping", "id": "c1", 1.5: 1}),
        pack({"t": "ping", "id": "c1", (1, 2): 1}),
    ],
    ids=["int", "bin", "mixed-int", "nil", "bool", "float", "array"],
)
def test_a_map_with_non_string_keys_is_bad_frame(frame: bytes) -> None:
    rejects(frame, ErrorCode.BAD_FRAME, None)


# ---------------------------------------------------------------- envelope


@pytest.mark.parametrize(
    "cid",
    [DELETE, None, 5, True, 1.5, b"c1", ["c1"], {"c": 1}, "", "x" * 65, "x" * 10_000],
    ids=[
        "missing",
        "nil",
        "int",
        "bool",
        "float",
        "bin",
        "array",
        "map",
        "empty",
        "65-chars",
        "10000-chars",
    ],
)
def test_a_bad_id_is_bad_request_with_re_null(cid: Any) -> None:
    m: dict[str, Any] = {"t": "ping"}
    if cid is not DELETE:
        m["id"] = cid
    err = rejects(pack(m), ErrorCode.BAD_REQUEST, None)
    assert names(err.message, "id")


def test_a_bad_id_wins_over_an_unknown_type_and_bad_fields() -> None:
    assert names(rejects(pack({"t": "nope", "id": ""}), ErrorCode.BAD_REQUEST, None).message, "id")
    assert names(
        rejects(pack({"t": "join_hunt", "id": 7}), ErrorCode.BAD_REQUEST, None).message, "id"
    )


@pytest.mark.parametrize(
    "cid", ["x", "x" * 64, "é" * 64, " "], ids=["1", "64", "64-non-ascii", "space"]
)
def test_ids_of_1_to_64_characters_are_accepted(cid: str) -> None:
    assert protocol.decode(pack({"t": "ping", "id": cid})).id == cid


@pytest.mark.parametrize(
    "t",
    [DELETE, None, 5, True, b"ping", ["ping"], {"ping": 1}],
    ids=["missing", "nil", "int", "bool", "bin", "array", "map"],
)
def test_a_valid_id_without_a_string_t_is_bad_request_with_re_the_id(t: Any) -> None:
    m: dict[str, Any] = {"id": ID}
    if t is not DELETE:
        m["t"] = t
    err = rejects(pack(m), ErrorCode.BAD_REQUEST, ID)
    assert names(err.message, "t")


@pytest.mark.parametrize(
    "t", ["nope", "", "PING", "Ping", "ping ", "welcome", "ok", "error", "event", "x" * 10_000]
)
def test_a_t_naming_no_command_is_unknown_type_with_re_the_id(t: str) -> None:
    err = rejects(pack({"t": t, "id": ID}), ErrorCode.UNKNOWN_TYPE, ID)
    assert len(err.message) < 200  # a huge t is not echoed back whole


# ---------------------------------------------------------------- fields

ANSWER_CLUE = {"text": "Capital of France?", "answer": "Paris", "points": 10}
LOCATION_CLUE = {"text": "The tower", "lat": 48.8584, "lon": 2.2945, "radius_m": 30, "points": 20}
HUNT = {"hunt_id": "h-1"}

BASES: dict[str, dict[str, Any]] = {
    "hello": {"t": "hello", "protocol": 1, "name": "Ada"},
    "hello+token": {"t": "hello", "protocol": 1, "token": "tok-7f3a"},
    "create_hunt": {
        "t": "create_hunt",
        "name": "Old Town",
        "clues": [ANSWER_CLUE, LOCATION_CLUE],
        "duration_s": 600,
        "max_players": 10,
    },
    "join_hunt": {"t": "join_hunt", **HUNT},
    "leave_hunt": {"t": "leave_hunt", **HUNT},
    "start_hunt": {"t": "start_hunt", **HUNT},
    "end_hunt": {"t": "end_hunt", **HUNT},
    "get_hunt": {"t": "get_hunt", **HUNT},
    "submit_answer": {"t": "submit_answer", **HUNT, "clue": 0, "answer": "Paris"},
    "check_in": {"t": "check_in", **HUNT, "clue": 1, "lat": 48.8584, "lon": 2.2945},
    "resume": {"t": "resume", **HUNT, "after_seq": 0},
}
HUNT_COMMANDS = [k for k, v in BASES.items() if "hunt_id" in v]


def mutate(base: str, path: Path, value: Any) -> bytes:
    m = copy.deepcopy(BASES[base])
    m["id"] = ID
    target: Any = m
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return pack(m)


# (base, path, field name in the message, lo, hi, required)
STRINGS: list[tuple[str, Path, str, int, int, bool]] = [
    ("hello", ("name",), "name", 1, 32, True),
    ("hello+token", ("token",), "token", 1, 256, False),
    ("create_hunt", ("name",), "name", 1, 80, True),
    ("create_hunt", ("clues", 0, "text"), "clues[0].text", 1, 500, True),
    ("create_hunt", ("clues", 1, "text"), "clues[1].text", 1, 500, True),
    ("create_hunt", ("clues", 0, "answer"), "clues[0].answer", 1, 100, True),
    *[(c, ("hunt_id",), "hunt_id", 1, 64, True) for c in HUNT_COMMANDS],
    ("submit_answer", ("answer",), "answer", 1, 100, True),
]
INTS: list[tuple[str, Path, str, int | None, int | None, bool]] = [
    ("hello", ("protocol",), "protocol", None, None, True),
    ("create_hunt", ("duration_s",), "duration_s", 10, 86_400, False),
    ("create_hunt", ("max_players",), "max_players", 1, 100_000, False),
    ("create_hunt", ("clues", 0, "points"), "clues[0].points", 1, 1000, True),
    ("create_hunt", ("clues", 1, "points"), "clues[1].points", 1, 1000, True),
    ("submit_answer", ("clue",), "clue", 0, None, True),
    ("check_in", ("clue",), "clue", 0, None, True),
    ("resume", ("after_seq",), "after_seq", 0, None, True),
]
NUMBERS: list[tuple[str, Path, str, float, float, bool]] = [
    ("create_hunt", ("clues", 1, "lat"), "clues[1].lat", -90, 90, True),
    ("create_hunt", ("clues", 1, "lon"), "clues[1].lon", -180, 180, True),
    ("create_hunt", ("clues", 1, "radius_m"), "clues[1].radius_m", 1, 10_000, False),
    ("check_in", ("lat",), "lat", -90, 90, True),
    ("check_in", ("lon",), "lon", -180, 180, True),
]
MISSING = [("missing", DELETE), ("nil", None)]
NOT_STR = [
    ("int", 5),
    ("float", 1.5),
    ("bool", True),
    ("bytes", b"Ada"),
    ("array", ["Ada"]),
    ("map", {"a": 1}),
]
NOT_INT = [
    ("str", "1"),
    ("float-1.0", 1.0),
    ("float-1.5", 1.5),
    ("true", True),
    ("false", False),
    ("bytes", b"\x01"),
    ("array", [1]),
    ("map", {"n": 1}),
]
NOT_NUMBER = [
    ("str", "1.0"),
    ("true", True),
    ("false", False),
    ("bytes", b"1"),
    ("array", [1.0]),
    ("map", {"n": 1.0}),
]
NON_FINITE = [("nan", float("nan")), ("+inf", float("inf")), ("-inf", float("-inf"))]
GIANT = [("2**64-1", 2**64 - 1), ("-2**63", -(2**63))]


def field_cases() -> Iterator[Any]:
    def case(base: str, path: Path, field: str, label: str, value: Any) -> Any:
        return pytest.param(base, path, value, field, id=f"{base}-{field}-{label}")

    for base, path, field, lo, hi, required in STRINGS:
        for label, value in [*(MISSING if required else []), *NOT_STR]:
            yield case(base, path, field, label, value)
        yield case(base, path, field, f"len-{lo - 1}", "x" * (lo - 1))
        yield case(base, path, field, f"len-{hi + 1}", "x" * (hi + 1))
    for base, path, field, ilo, ihi, required in INTS:
        for label, value in [*(MISSING if required else []), *NOT_INT]:
            yield case(base, path, field, label, value)
        if ilo is not None:
            yield case(base, path, field, str(ilo - 1), ilo - 1)
            yield case(base, path, field, "-2**63", -(2**63))
        if ihi is not None:
            yield case(base, path, field, str(ihi + 1), ihi + 1)
        if ilo is not None:
            yield case(base, path, field, "2**64-1", 2**64 - 1)
    for base, path, field, xlo, xhi, required in NUMBERS:
        for label, value in [*(MISSING if required else []), *NOT_NUMBER, *NON_FINITE, *GIANT]:
            yield case(base, path, field, label, value)
        step = 0.5 if field.endswith("radius_m") else 0.0001
        yield case(base, path, field, f"{xlo - step:g}", xlo - step)
        yield case(base, path, field, f"{xhi + step:g}", xhi + step)
    for label, value in [
        *MISSING,
        ("str", "abc"),
        ("map", ANSWER_CLUE),
        ("bytes", b"x"),
        ("int", 3),
        ("0-clues", []),
        ("101-clues", [ANSWER_CLUE] * 101),
    ]:
        yield case("create_hunt", ("clues",), "clues", label, value)
    for label, value in [
        ("nil", None),
        ("str", "x"),
        ("int", 5),
        ("array", [ANSWER_CLUE]),
        ("bytes", b"x"),
    ]:
        yield case("create_hunt", ("clues", 1), "clues[1]", label, value)


@pytest.mark.parametrize(("base", "path", "value", "field"), list(field_cases()))
def test_a_bad_field_is_bad_request_naming_it(
    base: str, path: Path, value: Any, field: str
) -> None:
    err = rejects(mutate(base, path, value), ErrorCode.BAD_REQUEST, ID)
    assert names(err.message, field), err.message


def accepted_cases() -> Iterator[Any]:
    for base, path, field, lo, hi, _ in STRINGS:
        for n in (lo, hi):
            yield pytest.param(base, path, "é" * n, id=f"{base}-{field}-len-{n}")
    for base, path, field, ilo, ihi, _ in INTS:
        for i in {ilo, ihi} - {None}:
            yield pytest.param(base, path, i, id=f"{base}-{field}-{i}")
    for base, path, field, xlo, xhi, _ in NUMBERS:
        for x in (int(xlo), int(xhi), float(xlo), float(xhi)):
            yield pytest.param(base, path, x, id=f"{base}-{field}-{x!r}")
    for base, path, field, _, _, required in [*STRINGS, *INTS, *NUMBERS]:
        if not required and field != "token":  # without token, hello needs a name
            yield pytest.param(base, path, DELETE, id=f"{base}-{field}-absent")
    yield pytest.param("create_hunt", ("clues",), [ANSWER_CLUE], id="1-clue")
    yield pytest.param("create_hunt", ("clues",), [LOCATION_CLUE] * 100, id="100-clues")


@pytest.mark.parametrize(("base", "path", "value"), list(accepted_cases()))
def test_values_at_the_bounds_are_accepted(base: str, path: Path, value: Any) -> None:
    cmd = protocol.decode(mutate(base, path, value))
    assert (cmd.TYPE, cmd.id) == (BASES[base]["t"], ID)


def test_the_bases_are_valid() -> None:
    for base in BASES:
        assert protocol.decode(mutate(base, ("id",), ID)).id == ID


def test_an_absent_radius_is_the_documented_default() -> None:
    cmd = protocol.decode(mutate("create_hunt", ("clues", 1, "radius_m"), DELETE))
    assert isinstance(cmd, CreateHunt)
    assert cmd.clues[1] == LocationClue("The tower", 48.8584, 2.2945, 20, 25.0)


@pytest.mark.parametrize(
    ("clue", "field"),
    [
        ({**ANSWER_CLUE, "lat": 1.0, "lon": 2.0}, "clues[1]"),
        ({**ANSWER_CLUE, "lat": 1.0}, "clues[1]"),
        ({**ANSWER_CLUE, "lon": 2.0}, "clues[1]"),
        ({**LOCATION_CLUE, "answer": "Paris"}, "clues[1]"),
        ({**LOCATION_CLUE, "answer": 5}, "clues[1]"),
    ],
    ids=["answer+lat+lon", "answer+lat", "answer+lon", "location+answer", "location+bad-answer"],
)
def test_a_clue_with_both_an_answer_and_coordinates_is_bad_request(clue: Any, field: str) -> None:
    err = rejects(mutate("create_hunt", ("clues", 1), clue), ErrorCode.BAD_REQUEST, ID)
    assert names(err.message, field), err.message


@pytest.mark.parametrize(
    ("clue", "field"),
    [
        ({"text": "?", "points": 1}, "clues[1].answer"),
        ({"text": "?", "points": 1, "lat": 1.0}, "clues[1].lon"),
        ({"text": "?", "points": 1, "lon": 1.0}, "clues[1].lat"),
        ({"text": "?", "points": 1, "radius_m": 10}, "clues[1].answer"),
    ],
    ids=["neither", "lat-only", "lon-only", "radius-only"],
)
def test_a_clue_that_is_neither_kind_is_bad_request(clue: Any, field: str) -> None:
    err = rejects(mutate("create_hunt", ("clues", 1), clue), ErrorCode.BAD_REQUEST, ID)
    assert names(err.message, field), err.message


def test_the_error_names_the_index_of_the_bad_clue() -> None:
    clues = [ANSWER_CLUE, LOCATION_CLUE, ANSWER_CLUE, {**ANSWER_CLUE, "points": 0}]
    err = rejects(mutate("create_hunt", ("clues",), clues), ErrorCode.BAD_REQUEST, ID)
    assert names(err.message, "clues[3].points"), err.message


@pytest.mark.parametrize("token", [DELETE, None], ids=["no-token", "nil-token"])
def test_hello_without_token_needs_a_name(token: Any) -> None:
    frame = mutate("hello+token", ("token",), token)
    err = rejects(frame, ErrorCode.BAD_REQUEST, ID)
    assert names(err.message, "name"), err.message


def test_hello_with_token_ignores_a_bad_name() -> None:
    frame = mutate("hello+token", ("name",), 12345)
    assert protocol.decode(frame) == Hello(protocol.messages.CommandId(ID), 1, None, "tok-7f3a")


def test_a_location_clue_keeps_its_coordinates_and_an_answer_clue_its_answer() -> None:
    cmd = protocol.decode(mutate("create_hunt", ("id",), ID))
    assert isinstance(cmd, CreateHunt)
    assert cmd.clues == (
        AnswerClue("Capital of France?", "Paris", 10),
        LocationClue("The tower", 48.8584, 2.2945, 20, 30.0),
    )
