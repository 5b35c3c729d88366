"""Version 1 of the client commands: one parser per ``t``.

A version 2 adds a module like this one and registers its table in
``protocol.codec.VERSIONS``; the session picks the table from ``hello``.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol import fields as f
from protocol.fields import Map
from protocol.messages import (
    DEFAULT_RADIUS_M,
    AnswerClue,
    CheckIn,
    Clue,
    Command,
    CommandId,
    CreateHunt,
    EndHunt,
    GetHunt,
    Hello,
    HuntId,
    JoinHunt,
    LeaveHunt,
    LocationClue,
    Ping,
    Resume,
    StartHunt,
    SubmitAnswer,
)

VERSION = 1
ID_MAX = 64
TOKEN_MAX = 256
Parser = Callable[[CommandId, Map], Command]


def _hunt_id(m: Map) -> HuntId:
    return HuntId(f.string(m, "hunt_id", 1, ID_MAX))


def _hello(cid: CommandId, m: Map) -> Hello:
    protocol = f.integer(m, "protocol", -(2**63), 2**64 - 1)
    token = f.opt_string(m, "token", 1, TOKEN_MAX)
    name = None if token is not None else f.string(m, "name", 1, 32)
    return Hello(cid, protocol, name, token)


def _clue(raw: object, i: int) -> Clue:
    path = f"clues[{i}]."
    m = f.mapping(raw, f"clues[{i}]")
    text = f.string(m, "text", 1, 500, path)
    points = f.integer(m, "points", 1, 1000, path)
    has_answer = m.get("answer") is not None
    if has_answer and (m.get("lat") is not None or m.get("lon") is not None):
        raise f.bad(f"clues[{i}]", "has both an answer and coordinates")
    if has_answer:
        return AnswerClue(text, f.string(m, "answer", 1, 100, path), points)
    if m.get("lat") is None and m.get("lon") is None:
        raise f.bad(f"clues[{i}].answer", "is required (or lat and lon)")
    lat = f.number(m, "lat", -90, 90, path)
    lon = f.number(m, "lon", -180, 180, path)
    radius = f.opt_number(m, "radius_m", 1, 10_000, DEFAULT_RADIUS_M, path)
    return LocationClue(text, lat, lon, points, radius)


def _create_hunt(cid: CommandId, m: Map) -> CreateHunt:
    name = f.string(m, "name", 1, 80)
    clues = tuple(_clue(c, i) for i, c in enumerate(f.array(m, "clues", 1, 100)))
    duration = f.opt_integer(m, "duration_s", 10, 86_400)
    max_players = f.opt_integer(m, "max_players", 1, 100_000)
    return CreateHunt(cid, name, clues, duration, max_players)


def _submit_answer(cid: CommandId, m: Map) -> SubmitAnswer:
    clue = f.integer(m, "clue", 0, 99)
    return SubmitAnswer(cid, _hunt_id(m), clue, f.string(m, "answer", 1, 100))


def _check_in(cid: CommandId, m: Map) -> CheckIn:
    clue = f.integer(m, "clue", 0, 99)
    lat = f.number(m, "lat", -90, 90)
    return CheckIn(cid, _hunt_id(m), clue, lat, f.number(m, "lon", -180, 180))


def _resume(cid: CommandId, m: Map) -> Resume:
    return Resume(cid, _hunt_id(m), f.integer(m, "after_seq", 0, 2**63 - 1))


COMMANDS: dict[str, Parser] = {
    "hello": _hello,
    "create_hunt": _create_hunt,
    "join_hunt": lambda cid, m: JoinHunt(cid, _hunt_id(m)),
    "leave_hunt": lambda cid, m: LeaveHunt(cid, _hunt_id(m)),
    "start_hunt": lambda cid, m: StartHunt(cid, _hunt_id(m)),
    "end_hunt": lambda cid, m: EndHunt(cid, _hunt_id(m)),
    "submit_answer": _submit_answer,
    "check_in": _check_in,
    "get_hunt": lambda cid, m: GetHunt(cid, _hunt_id(m)),
    "resume": _resume,
    "ping": lambda cid, m: Ping(cid),
}
