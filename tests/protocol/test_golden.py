"""Golden bytes: fixed msgpack frames that pin protocol v1 on the wire.

The hex below was produced once and is never regenerated: a change that makes
one of these tests fail changes the wire format, which docs/protocol.md forbids
without a new protocol version.
"""

from __future__ import annotations

import msgpack
import pytest

import protocol
from protocol import v1
from protocol.messages import (
    AnswerClue,
    CheckIn,
    Command,
    CommandId,
    CreateHunt,
    EndHunt,
    Error,
    EventPush,
    GetHunt,
    Hello,
    HuntId,
    JoinHunt,
    LeaveHunt,
    LocationClue,
    Ok,
    Ping,
    Resume,
    ServerMessage,
    StartHunt,
    SubmitAnswer,
    Welcome,
)


def h(*chunks: str) -> bytes:
    return bytes.fromhex("".join(chunks))


C = CommandId
H1 = HuntId("h-1")

# ---------------------------------------------------------------- client -> server

COMMANDS: dict[str, tuple[bytes, Command]] = {
    "hello with name": (
        h(
            "84a174a568656c6c6fa26964a26331a870726f746f636f6c01a46e616d65a341",
            "6461",
        ),
        Hello(C("c1"), 1, name="Ada"),
    ),
    "hello with token": (
        h(
            "84a174a568656c6c6fa26964a26332a870726f746f636f6c01a5746f6b656ea8",
            "746f6b2d37663361",
        ),
        Hello(C("c2"), 1, token="tok-7f3a"),
    ),
    "hello with token ignores name": (
        h(
            "85a174a568656c6c6fa26964a26333a870726f746f636f6c01a46e616d65a341",
            "6461a5746f6b656ea8746f6b2d37663361",
        ),
        Hello(C("c3"), 1, name=None, token="tok-7f3a"),
    ),
    # answer clue; location clue with float coords and radius_m; location clue
    # with int coords and no radius_m (default 25); duration_s; max_players
    "create_hunt full": (
        h(
            "86a174ab6372656174655f68756e74a26964a26334a46e616d65a84f6c642054",
            "6f776ea5636c7565739383a474657874b24361706974616c206f66204672616e",
            "63653fa6616e73776572a55061726973a6706f696e74730a85a474657874a954",
            "686520746f776572a36c6174cb40486de00d1b7176a36c6f6ecb40025b22d0e5",
            "6042a87261646975735f6dcb4049400000000000a6706f696e74731484a47465",
            "7874aa54686520737175617265a36c6174d0dfa36c6f6ecc97a6706f696e7473",
            "cd03e8aa6475726174696f6e5f73cd0e10ab6d61785f706c617965727332",
        ),
        CreateHunt(
            C("c4"),
            "Old Town",
            (
                AnswerClue("Capital of France?", "Paris", 10),
                LocationClue("The tower", 48.8584, 2.2945, 20, 50.5),
                LocationClue("The square", -33.0, 151.0, 1000, 25.0),
            ),
            duration_s=3600,
            max_players=50,
        ),
    ),
    "create_hunt minimal": (
        h(
            "84a174ab6372656174655f68756e74a26964a26335a46e616d65a148a5636c75",
            "65739183a474657874a13fa6616e73776572a161a6706f696e747301",
        ),
        CreateHunt(C("c5"), "H", (AnswerClue("?", "a", 1),), None, None),
    ),
    "join_hunt": (
        h("83a174a96a6f696e5f68756e74a26964a26336a768756e745f6964a3682d31"),
        JoinHunt(C("c6"), H1),
    ),
    "leave_hunt": (
        h("83a174aa6c656176655f68756e74a26964a26337a768756e745f6964a3682d31"),
        LeaveHunt(C("c7"), H1),
    ),
    "start_hunt": (
        h("83a174aa73746172745f68756e74a26964a26338a768756e745f6964a3682d31"),
        StartHunt(C("c8"), H1),
    ),
    "end_hunt": (
        h("83a174a8656e645f68756e74a26964a26339a768756e745f6964a3682d31"),
        EndHunt(C("c9"), H1),
    ),
    "submit_answer": (
        h(
            "85a174ad7375626d69745f616e73776572a26964a3633130a768756e745f6964",
            "a3682d31a4636c756500a6616e73776572a55061726973",
        ),
        SubmitAnswer(C("c10"), H1, 0, "Paris"),
    ),
    "check_in with floats": (
        h(
            "86a174a8636865636b5f696ea26964a3633131a768756e745f6964a3682d31a4",
            "636c756501a36c6174cb40486de00d1b7176a36c6f6ecbc0025b22d0e56042",
        ),
        CheckIn(C("c11"), H1, 1, 48.8584, -2.2945),
    ),
    "check_in with ints at the bounds": (
        h(
            "86a174a8636865636b5f696ea26964a3633132a768756e745f6964a3682d31a4",
            "636c756502a36c6174d0a6a36c6f6eccb4",
        ),
        CheckIn(C("c12"), H1, 2, -90.0, 180.0),
    ),
    "get_hunt": (
        h("83a174a86765745f68756e74a26964a3633133a768756e745f6964a3682d31"),
        GetHunt(C("c13"), H1),
    ),
    "resume": (
        h(
            "84a174a6726573756d65a26964a3633134a768756e745f6964a3682d31a96166",
            "7465725f736571cd012c",
        ),
        Resume(C("c14"), H1, 300),
    ),
    "ping": (
        h("82a174a470696e67a26964a3633135"),
        Ping(C("c15")),
    ),
}


@pytest.mark.parametrize(("frame", "expected"), COMMANDS.values(), ids=COMMANDS.keys())
def test_command_golden_bytes_decode_to_the_dataclass(frame: bytes, expected: Command) -> None:
    got = protocol.decode(frame)
    assert type(got) is type(expected)
    assert got == expected


def test_every_command_type_has_a_golden_frame() -> None:
    assert {type(cmd).TYPE for _, cmd in COMMANDS.values()} == set(v1.COMMANDS)


def test_numbers_sent_as_msgpack_ints_come_out_as_floats() -> None:
    cmd = protocol.decode(COMMANDS["check_in with ints at the bounds"][0])
    assert isinstance(cmd, CheckIn)
    assert type(cmd.lat) is float
    assert type(cmd.lon) is float
    hunt = protocol.decode(COMMANDS["create_hunt full"][0])
    assert isinstance(hunt, CreateHunt)
    square = hunt.clues[2]
    assert isinstance(square, LocationClue)
    assert (type(square.lat), type(square.lon), type(square.radius_m)) == (float, float, float)


def test_clues_are_a_tuple_so_the_command_stays_hashable() -> None:
    cmd = protocol.decode(COMMANDS["create_hunt full"][0])
    assert isinstance(cmd, CreateHunt)
    assert isinstance(cmd.clues, tuple)
    hash(cmd)


def test_key_order_of_a_command_does_not_matter() -> None:
    frame, expected = COMMANDS["check_in with floats"]
    as_map = msgpack.unpackb(frame)
    reversed_frame = msgpack.packb(dict(reversed(as_map.items())), use_bin_type=True)
    assert reversed_frame != frame
    assert protocol.decode(reversed_frame) == expected


def test_unknown_extra_fields_are_ignored() -> None:
    frame, expected = COMMANDS["join_hunt"]
    as_map = msgpack.unpackb(frame)
    as_map["future_field"] = [1, {"x": None}]
    assert protocol.decode(msgpack.packb(as_map, use_bin_type=True)) == expected


def test_a_binary_frame_may_arrive_as_bytearray_or_memoryview() -> None:
    frame, expected = COMMANDS["ping"]
    assert protocol.decode(bytearray(frame)) == expected  # type: ignore[arg-type]
    assert protocol.decode(memoryview(frame)) == expected  # type: ignore[arg-type]


def test_hello_with_another_protocol_version_decodes_for_the_session_to_refuse() -> None:
    # unsupported_protocol is the session's answer, not the codec's
    frame = msgpack.packb({"t": "hello", "id": "c1", "protocol": 2, "name": "Ada"})
    assert protocol.decode(frame) == Hello(C("c1"), 2, name="Ada")


# ---------------------------------------------------------------- server -> client

HUNT_VIEW = {
    "hunt_id": "h-1",
    "name": "Old Town",
    "organizer": "p-0",
    "status": "running",
    "created_at": 1_700_000_000_000,
    "started_at": 1_700_000_060_000,
    "ends_at": None,
    "clues": [
        {"index": 0, "kind": "answer", "points": 10, "text": "Capital of France?"},
        {"index": 1, "kind": "location", "points": 20, "text": "The tower"},
    ],
    "players": [{"player_id": "p-1", "name": "Ada", "score": 10, "solved": [0]}],
    "max_players": None,
}

SERVER: dict[str, tuple[bytes, ServerMessage]] = {
    "welcome": (
        h(
            "86a174a777656c636f6d65a27265a26331a9706c617965725f6964a3702d31a4",
            "6e616d65a3416461a5746f6b656ea8746f6b2d37663361ab7365727665725f74",
            "696d65cf0000018bcfe56800",
        ),
        Welcome("c1", "p-1", "Ada", "tok-7f3a", 1_700_000_000_000),
    ),
    "ok hunt_id": (
        h("83a174a26f6ba27265a26334a768756e745f6964a3682d31"),
        Ok("c4", {"hunt_id": "h-1"}),
    ),
    "ok correct answer": (
        h(
            "85a174a26f6ba27265a3633130a7636f7272656374c3a6706f696e74730aa573",
            "636f726519",
        ),
        Ok("c10", {"correct": True, "points": 10, "score": 25}),
    ),
    "ok wrong answer": (
        h(
            "85a174a26f6ba27265a3633130a7636f7272656374c2a6706f696e747300a573",
            "636f726500",
        ),
        Ok("c10", {"correct": False, "points": 0, "score": 0}),
    ),
    "ok hunt and seq": (
        h(
            "84a174a26f6ba27265a26336a468756e748aa768756e745f6964a3682d31a46e",
            "616d65a84f6c6420546f776ea96f7267616e697a6572a3702d30a67374617475",
            "73a772756e6e696e67aa637265617465645f6174cf0000018bcfe56800aa7374",
            "61727465645f6174cf0000018bcfe65260a7656e64735f6174c0a5636c756573",
            "9284a5696e64657800a46b696e64a6616e73776572a6706f696e74730aa47465",
            "7874b24361706974616c206f66204672616e63653f84a5696e64657801a46b69",
            "6e64a86c6f636174696f6ea6706f696e747314a474657874a954686520746f77",
            "6572a7706c61796572739184a9706c617965725f6964a3702d31a46e616d65a3",
            "416461a573636f72650aa6736f6c7665649100ab6d61785f706c6179657273c0",
            "a373657103",
        ),
        Ok("c6", {"hunt": HUNT_VIEW, "seq": 3}),
    ),
    "ok server_time": (
        h(
            "83a174a26f6ba27265a3633135ab7365727665725f74696d65cf0000018bcfe5",
            "687b",
        ),
        Ok("c15", {"server_time": 1_700_000_000_123}),
    ),
    "ok without result": (
        h("82a174a26f6ba27265a26337"),
        Ok("c7", {}),
    ),
    "error with re null": (
        h(
            "84a174a56572726f72a27265c0a4636f6465a96261645f6672616d65a76d6573",
            "73616765b16e6f742076616c6964206d73677061636b",
        ),
        Error(None, "bad_frame", "not valid msgpack"),
    ),
    "error with re": (
        h(
            "84a174a56572726f72a27265a26336a4636f6465a96e6f745f666f756e64a76d",
            "657373616765ac6e6f20737563682068756e74",
        ),
        Error("c6", "not_found", "no such hunt"),
    ),
    "event clue_solved": (
        h(
            "86a174a56576656e74a768756e745f6964a3682d31a373657104a46b696e64ab",
            "636c75655f736f6c766564a26174cf0000018bcfe569c8a46461746184a9706c",
            "617965725f6964a3702d31a4636c756500a6706f696e74730aa573636f726519",
        ),
        EventPush(
            "h-1",
            4,
            "clue_solved",
            1_700_000_000_456,
            {"player_id": "p-1", "clue": 0, "points": 10, "score": 25},
        ),
    ),
    "event hunt_started with ends_at null": (
        h(
            "86a174a56576656e74a768756e745f6964a3682d31a373657102a46b696e64ac",
            "68756e745f73746172746564a26174cf0000018bcfe65260a46461746181a765",
            "6e64735f6174c0",
        ),
        EventPush("h-1", 2, "hunt_started", 1_700_000_060_000, {"ends_at": None}),
    ),
}


@pytest.mark.parametrize(("frame", "msg"), SERVER.values(), ids=SERVER.keys())
def test_server_message_encodes_to_the_golden_bytes(frame: bytes, msg: ServerMessage) -> None:
    assert protocol.encode(msg) == frame


@pytest.mark.parametrize(("frame", "msg"), SERVER.values(), ids=SERVER.keys())
def test_server_golden_bytes_decode_back_to_the_message(frame: bytes, msg: ServerMessage) -> None:
    got = protocol.decode_server(frame)
    assert type(got) is type(msg)
    assert got == msg


@pytest.mark.parametrize(("frame", "msg"), SERVER.values(), ids=SERVER.keys())
def test_server_keys_are_t_then_re_then_fields_in_order(frame: bytes, msg: ServerMessage) -> None:
    keys = list(msgpack.unpackb(frame))
    assert keys[0] == "t"
    assert msgpack.unpackb(frame)["t"] == msg.TYPE
    if isinstance(msg, Ok):
        assert keys == ["t", "re", *msg.result]
    elif isinstance(msg, EventPush):
        assert keys == ["t", "hunt_id", "seq", "kind", "at", "data"]
    else:
        assert keys[1] == "re"


def test_every_server_message_type_has_a_golden_frame() -> None:
    assert {type(m) for _, m in SERVER.values()} == {Welcome, Ok, Error, EventPush}


def test_float_results_are_sent_as_float64() -> None:
    frame = protocol.encode(Ok("c1", {"x": 0.1}))
    assert frame == h("83a174a26f6ba27265a26331a178cb3fb999999999999a")
    got = protocol.decode_server(frame)
    assert isinstance(got, Ok)
    assert got.result["x"] == 0.1
