"""The hunt's rules: decide + apply, phase by phase, as docs/protocol.md and the design say."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from actors.game.events import (
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
    public_data,
    rejection,
)
from actors.game.hunt_rules import (
    Ctx,
    Decision,
    RuleInput,
    Tick,
    apply,
    decide,
)
from actors.game.hunt_state import (
    RECENT_IDS_PER_PLAYER,
    HuntState,
    Member,
    Phase,
    Recent,
    changed,
    evolve,
    hunt_view,
    leaderboard,
    remember,
)
from actors.game.ids import hunt_id_for
from actors.game.matching import EARTH_RADIUS_M, answers_match, distance_m, normalize_answer
from actors.game.snapshots import hunt_from_bytes, hunt_to_bytes
from protocol.errors import NOT_REMEMBERED, ErrorCode
from protocol.messages import (
    AnswerClue,
    CheckIn,
    Clue,
    CommandId,
    CreateHunt,
    EndHunt,
    HuntId,
    JoinHunt,
    LeaveHunt,
    LocationClue,
    PlayerId,
    StartHunt,
    SubmitAnswer,
)

ORG = PlayerId("org")
P1, P2, P3 = PlayerId("p1"), PlayerId("p2"), PlayerId("p3")
T0 = 1_700_000_000_000

FOUNTAIN = (48.137, 11.575)
CLUES: tuple[Clue, ...] = (
    AnswerClue("What colour is the sky?", "Blue", 10),
    LocationClue("Find the fountain", FOUNTAIN[0], FOUNTAIN[1], 7),
    AnswerClue("Say it wide", "full width", 5),
)
RIGHT: dict[int, Any] = {0: "blue", 1: FOUNTAIN, 2: "full width"}


def north_of(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat + math.degrees(metres / EARTH_RADIUS_M), lon


def east_of(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat, lon + math.degrees(metres / (EARTH_RADIUS_M * math.cos(math.radians(lat))))


class Game:
    """A hunt driven through ``decide`` and ``apply`` as the host does."""

    def __init__(
        self,
        clues: tuple[Clue, ...] = CLUES,
        *,
        duration_s: int | None = None,
        max_players: int | None = None,
    ) -> None:
        self.now = T0
        self.n = 0
        self.state: HuntState | None = None
        self.events: list[Event] = []
        self.create_cmd = CreateHunt(self.cid(), "The Hunt", clues, duration_s, max_players)
        d = self.send(ORG, self.create_cmd)
        assert d.reply.ok, d.reply

    @property
    def s(self) -> HuntState:
        assert self.state is not None
        return self.state

    @property
    def hunt_id(self) -> HuntId:
        return self.s.hunt_id

    def cid(self) -> CommandId:
        self.n += 1
        return CommandId(f"c{self.n}")

    def send(self, player: PlayerId, cmd: RuleInput, *, now: int | None = None) -> Decision:
        if now is not None:
            self.now = now
        ctx = Ctx(player, f"name-{player}", self.now)
        d = decide(self.state, cmd, ctx)
        self.state = apply(self.state, cmd, ctx, d)
        self.events.extend(d.events)
        return d

    def tick(self, now: int) -> Decision:
        return self.send(ORG, Tick(), now=now)

    def join(self, player: PlayerId, **kw: Any) -> Decision:
        return self.send(player, JoinHunt(self.cid(), self.hunt_id), **kw)

    def leave(self, player: PlayerId, **kw: Any) -> Decision:
        return self.send(player, LeaveHunt(self.cid(), self.hunt_id), **kw)

    def start(self, player: PlayerId = ORG, **kw: Any) -> Decision:
        return self.send(player, StartHunt(self.cid(), self.hunt_id), **kw)

    def end(self, player: PlayerId = ORG, **kw: Any) -> Decision:
        return self.send(player, EndHunt(self.cid(), self.hunt_id), **kw)

    def answer(self, player: PlayerId, clue: int, text: str, **kw: Any) -> Decision:
        return self.send(player, SubmitAnswer(self.cid(), self.hunt_id, clue, text), **kw)

    def check_in(self, player: PlayerId, clue: int, lat: float, lon: float, **kw: Any) -> Decision:
        return self.send(player, CheckIn(self.cid(), self.hunt_id, clue, lat, lon), **kw)

    def solve(self, player: PlayerId, clue: int, **kw: Any) -> Decision:
        right = RIGHT[clue]
        if isinstance(right, tuple):
            return self.check_in(player, clue, *right, **kw)
        return self.answer(player, clue, right, **kw)

    def resend(self, player: PlayerId, cmd: RuleInput) -> Decision:
        return self.send(player, cmd)


def public(d: Decision) -> list[Event]:
    return [e for e in d.events if not isinstance(e, ReplyRecorded)]


def code(d: Decision) -> str | None:
    return d.reply.code


def result(d: Decision) -> dict[str, Any]:
    assert d.reply.ok, d.reply
    return dict(d.reply.result)


def recorded_only(d: Decision, player: PlayerId) -> None:
    """The decision changed nothing public: just its reply is kept."""
    assert len(d.events) == 1
    rec = d.events[0]
    assert isinstance(rec, ReplyRecorded)
    assert rec.player_id == player
    assert rec.reply == d.reply


def lobby(**kw: Any) -> Game:
    g = Game(**kw)
    g.join(P1)
    g.join(P2)
    return g


def running(**kw: Any) -> Game:
    g = lobby(**kw)
    assert g.start().reply.ok
    return g


def finished(**kw: Any) -> Game:
    g = running(**kw)
    assert g.end().reply.ok
    return g


PHASES = {"lobby": lobby, "running": running, "finished": finished}


# ---- create_hunt --------------------------------------------------------------


def test_create_makes_hunt_created_as_seq_1() -> None:
    g = Game(duration_s=60, max_players=3)
    (created,) = g.events
    assert isinstance(created, HuntCreated)
    assert created.hunt_id == hunt_id_for(ORG, g.create_cmd.id)
    assert created.organizer == ORG
    assert created.at == T0
    assert created.duration_s == 60
    assert created.max_players == 3
    assert created.clues == (
        ClueDef("What colour is the sky?", 10, answer="Blue"),
        ClueDef("Find the fountain", 7, lat=FOUNTAIN[0], lon=FOUNTAIN[1], radius_m=25.0),
        ClueDef("Say it wide", 5, answer="full width"),
    )
    assert g.s.seq == 1
    assert g.s.phase is Phase.LOBBY
    assert g.s.organizer == ORG
    assert g.s.members == {}


def test_create_replies_with_the_derived_hunt_id() -> None:
    cmd = CreateHunt(CommandId("make-1"), "H", CLUES)
    d = decide(None, cmd, Ctx(ORG, "Org", T0))
    assert result(d) == {"hunt_id": hunt_id_for(ORG, CommandId("make-1"))}


def test_hunt_id_is_derived_from_creator_and_command_id() -> None:
    a = hunt_id_for(ORG, CommandId("x"))
    assert a == hunt_id_for(ORG, CommandId("x"))
    assert a != hunt_id_for(P1, CommandId("x"))
    assert a != hunt_id_for(ORG, CommandId("y"))
    # no ambiguity from gluing the two parts together
    assert hunt_id_for(PlayerId("ab"), CommandId("c")) != hunt_id_for(
        PlayerId("a"), CommandId("bc")
    )
    # same command id, same creator: the same hunt through decide, too
    one = decide(None, CreateHunt(CommandId("x"), "H", CLUES), Ctx(ORG, "O", T0))
    two = decide(None, CreateHunt(CommandId("x"), "H", CLUES), Ctx(ORG, "O", T0 + 5))
    other = decide(None, CreateHunt(CommandId("x"), "H", CLUES), Ctx(P1, "P", T0))
    assert result(one)["hunt_id"] == result(two)["hunt_id"] == a
    assert result(other)["hunt_id"] != a


def test_resent_create_returns_the_same_hunt_id_and_no_events() -> None:
    g = Game()
    before = g.s
    d = g.resend(ORG, g.create_cmd)
    assert d.duplicate
    assert d.events == ()
    assert result(d) == {"hunt_id": g.hunt_id}
    assert g.s == before


def test_create_onto_a_hunt_of_another_creator_is_a_conflict() -> None:
    g = Game()
    d = decide(g.s, g.create_cmd, Ctx(P1, "P", T0))
    assert code(d) == ErrorCode.CONFLICT
    assert d.events == ()


@pytest.mark.parametrize(
    "cmd",
    [
        JoinHunt(CommandId("a"), HuntId("nope")),
        LeaveHunt(CommandId("a"), HuntId("nope")),
        StartHunt(CommandId("a"), HuntId("nope")),
        EndHunt(CommandId("a"), HuntId("nope")),
        SubmitAnswer(CommandId("a"), HuntId("nope"), 0, "x"),
        CheckIn(CommandId("a"), HuntId("nope"), 0, 0.0, 0.0),
    ],
)
def test_commands_to_a_hunt_that_does_not_exist_are_not_found(cmd: RuleInput) -> None:
    d = decide(None, cmd, Ctx(P1, "P", T0))
    assert code(d) == ErrorCode.NOT_FOUND
    assert d.events == ()


def test_apply_refuses_to_make_a_hunt_without_events() -> None:
    cmd = JoinHunt(CommandId("a"), HuntId("nope"))
    ctx = Ctx(P1, "P", T0)
    with pytest.raises(ValueError):
        apply(None, cmd, ctx, decide(None, cmd, ctx))


def test_evolve_refuses_events_before_hunt_created() -> None:
    with pytest.raises(ValueError):
        evolve(None, PlayerJoined(T0, P1, "x"))


# ---- organizer rights -------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("who", [P1, P3])
@pytest.mark.parametrize("what", ["start", "end"])
def test_only_the_organizer_starts_or_ends(phase: str, who: PlayerId, what: str) -> None:
    g = PHASES[phase]()
    before = g.s
    d = g.start(who) if what == "start" else g.end(who)
    assert code(d) == ErrorCode.FORBIDDEN
    recorded_only(d, who)
    assert g.s.phase == before.phase
    assert g.s.seq == before.seq


def test_start_without_duration_has_no_end() -> None:
    g = lobby()
    d = g.start(now=T0 + 500)
    assert d.reply == Reply()
    assert d.events == (HuntStarted(T0 + 500, None),)
    assert g.s.phase is Phase.RUNNING
    assert g.s.started_at == T0 + 500
    assert g.s.ends_at is None
    assert g.s.seq == 4


def test_start_with_duration_ends_duration_seconds_later() -> None:
    g = lobby(duration_s=90)
    d = g.start(now=T0 + 1234)
    assert d.events == (HuntStarted(T0 + 1234, T0 + 1234 + 90_000),)
    assert g.s.ends_at == T0 + 1234 + 90 * 1000


def test_start_with_nobody_joined_is_allowed() -> None:
    g = Game()
    assert g.start().reply.ok
    assert g.s.phase is Phase.RUNNING


def test_start_twice_is_a_conflict() -> None:
    g = running()
    d = g.start()
    assert code(d) == ErrorCode.CONFLICT
    recorded_only(d, ORG)


@pytest.mark.parametrize("what", ["start", "end"])
def test_start_or_end_of_a_finished_hunt_is_a_conflict(what: str) -> None:
    g = finished()
    d = g.start() if what == "start" else g.end()
    assert code(d) == ErrorCode.CONFLICT
    recorded_only(d, ORG)
    assert g.s.phase is Phase.FINISHED


@pytest.mark.parametrize("phase", ["lobby", "running"])
def test_end_finishes_with_reason_ended_and_the_leaderboard(phase: str) -> None:
    g = PHASES[phase]()
    if phase == "running":
        g.solve(P2, 0)
    board = leaderboard(g.s)
    d = g.end(now=g.now + 10)
    assert d.reply == Reply()
    (fin,) = d.events
    assert isinstance(fin, HuntFinished)
    assert fin.reason == "ended"
    assert fin.at == g.now
    assert list(fin.leaderboard) == board
    assert [e["player_id"] for e in fin.leaderboard] == (
        [P2, P1] if phase == "running" else [P1, P2]
    )
    assert g.s.phase is Phase.FINISHED
    assert g.s.finished_reason == "ended"


# ---- join and leave ------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["lobby", "running"])
def test_join_adds_a_member(phase: str) -> None:
    g = PHASES[phase]()
    seq = g.s.seq
    d = g.join(P3, now=g.now + 7)
    assert d.reply == Reply(with_view=True, result={"view_seq": seq + 1})
    assert d.events == (PlayerJoined(g.now, P3, "name-p3"),)
    m = g.s.member(P3)
    assert m is not None
    assert (m.name, m.joined_at, m.score, m.solved) == ("name-p3", g.now, 0, ())
    assert g.s.seq == seq + 1


def test_join_of_a_finished_hunt_is_a_conflict() -> None:
    g = finished()
    d = g.join(P3)
    assert code(d) == ErrorCode.CONFLICT
    recorded_only(d, P3)
    assert g.s.member(P3) is None


@pytest.mark.parametrize("phase", ["lobby", "running"])
def test_the_organizer_does_not_play(phase: str) -> None:
    g = PHASES[phase]()
    d = g.join(ORG)
    assert code(d) == ErrorCode.FORBIDDEN
    recorded_only(d, ORG)
    assert g.s.member(ORG) is None


@pytest.mark.parametrize("phase", ["lobby", "running"])
def test_joining_again_is_ok_with_no_public_event(phase: str) -> None:
    g = PHASES[phase]()
    seq = g.s.seq
    joined_at = g.s.members[P1].joined_at
    d = g.join(P1, now=g.now + 99)
    assert d.reply == Reply(with_view=True, result={"view_seq": seq})
    recorded_only(d, P1)
    assert g.s.seq == seq
    assert g.s.members[P1].joined_at == joined_at


@pytest.mark.parametrize("phase", ["lobby", "running"])
def test_leave_makes_the_member_inactive(phase: str) -> None:
    g = PHASES[phase]()
    seq = g.s.seq
    d = g.leave(P1)
    assert d.reply == Reply(result={"seq": seq + 1})
    assert d.events == (PlayerLeft(g.now, P1),)
    assert g.s.member(P1) is None
    assert [m.player_id for m in g.s.active_members()] == [P2]
    assert [e["player_id"] for e in hunt_view(g.s)["players"]] == [P2]
    assert g.s.seq == seq + 1


@pytest.mark.parametrize("phase", ["lobby", "running"])
@pytest.mark.parametrize("who", [P3, ORG])
def test_leave_by_a_non_member_is_forbidden(phase: str, who: PlayerId) -> None:
    g = PHASES[phase]()
    d = g.leave(who)
    assert code(d) == ErrorCode.FORBIDDEN
    recorded_only(d, who)


def test_leave_twice_is_forbidden_the_second_time() -> None:
    g = lobby()
    assert g.leave(P1).reply.ok
    d = g.leave(P1)
    assert code(d) == ErrorCode.FORBIDDEN


def test_leaving_a_finished_hunt_is_a_conflict() -> None:
    g = finished()
    d = g.leave(P1)
    assert code(d) == ErrorCode.CONFLICT
    recorded_only(d, P1)
    assert g.s.member(P1) is not None


def test_join_after_leave_makes_a_member_again() -> None:
    g = lobby()
    g.leave(P1)
    d = g.join(P1)
    assert public(d) == [PlayerJoined(g.now, P1, "name-p1")]
    assert g.s.member(P1) is not None


# ---- max_players ------------------------------------------------------------------------


def test_a_full_hunt_refuses_joins_and_a_leave_frees_a_place() -> None:
    g = Game(max_players=2)
    assert g.join(P1).reply.ok
    assert g.join(P2).reply.ok
    full = g.join(P3)
    assert code(full) == ErrorCode.CONFLICT
    recorded_only(full, P3)
    assert g.s.member(P3) is None
    # a member joining again is still ok when the hunt is full
    assert g.join(P1).reply == Reply(with_view=True, result={"view_seq": g.s.seq})
    g.leave(P1)
    d = g.join(P3)
    assert d.reply.ok
    assert public(d) == [PlayerJoined(g.now, P3, "name-p3")]
    assert len(g.s.active_members()) == 2


def test_a_full_running_hunt_refuses_joins() -> None:
    g = Game(max_players=1)
    g.join(P1)
    g.start()
    assert code(g.join(P2)) == ErrorCode.CONFLICT


def test_a_rejected_join_resent_after_a_place_frees_stays_rejected() -> None:
    g = Game(max_players=1)
    g.join(P1)
    join = JoinHunt(g.cid(), g.hunt_id)
    first = g.send(P2, join)
    assert code(first) == ErrorCode.CONFLICT
    g.leave(P1)
    again = g.resend(P2, join)
    assert again.duplicate
    assert again.events == ()
    assert again.reply == first.reply
    assert g.s.member(P2) is None
    # a new command id is a new attempt
    assert g.join(P2).reply.ok


# ---- time limit ---------------------------------------------------------------------------


def timed() -> Game:
    g = lobby(duration_s=60)
    g.start(now=T0 + 1000)
    assert g.s.ends_at == T0 + 1000 + 60_000
    return g


def test_a_command_just_before_the_end_still_plays() -> None:
    g = timed()
    ends_at = g.s.ends_at
    assert ends_at is not None
    d = g.solve(P1, 0, now=ends_at - 1)
    assert result(d) == {"correct": True, "points": 10, "score": 10}
    assert [type(e) for e in d.events] == [ClueSolved]
    assert g.s.phase is Phase.RUNNING


def test_a_command_at_the_end_first_finishes_the_hunt_time_up() -> None:
    g = timed()
    g.solve(P2, 0)
    ends_at = g.s.ends_at
    assert ends_at is not None
    board = leaderboard(g.s)
    seq = g.s.seq
    d = g.solve(P1, 0, now=ends_at)
    assert code(d) == ErrorCode.CONFLICT
    assert d.events == (HuntFinished(ends_at, "time_up", tuple(board)),)
    assert g.s.phase is Phase.FINISHED
    assert g.s.finished_reason == "time_up"
    assert g.s.seq == seq + 1
    # the reply is still remembered, though no reply_recorded was needed
    assert g.s.recent_reply(P1, CommandId(f"c{g.n}")) == d.reply


@pytest.mark.parametrize("what", ["join", "leave", "start", "end", "check_in"])
def test_any_command_after_the_end_finishes_time_up_first(what: str) -> None:
    g = timed()
    ends_at = g.s.ends_at
    assert ends_at is not None
    later = ends_at + 5000
    d = {
        "join": lambda: g.join(P3, now=later),
        "leave": lambda: g.leave(P1, now=later),
        "start": lambda: g.start(now=later),
        "end": lambda: g.end(now=later),
        "check_in": lambda: g.check_in(P1, 1, *FOUNTAIN, now=later),
    }[what]()
    fin = d.events[0]
    assert isinstance(fin, HuntFinished)
    assert fin.reason == "time_up"
    assert len(public(d)) == 1
    assert code(d) == ErrorCode.CONFLICT
    assert g.s.phase is Phase.FINISHED
    assert g.s.finished_reason == "time_up"


def test_a_tick_finishes_the_hunt_when_its_time_is_up() -> None:
    g = timed()
    ends_at = g.s.ends_at
    assert ends_at is not None
    recent = g.s.recent
    early = g.tick(ends_at - 1)
    assert early.events == ()
    assert g.s.phase is Phase.RUNNING
    d = g.tick(ends_at)
    assert d.events == (HuntFinished(ends_at, "time_up", tuple(leaderboard(g.s))),)
    assert g.s.phase is Phase.FINISHED
    assert g.s.recent == recent  # a tick has no reply to remember
    assert g.tick(ends_at + 10).events == ()
    assert g.s.finished_reason == "time_up"


def test_a_tick_changes_nothing_in_the_lobby_or_without_a_duration() -> None:
    g = lobby(duration_s=10)
    assert g.tick(T0 + 10**9).events == ()
    assert g.s.phase is Phase.LOBBY
    h = running()
    assert h.tick(T0 + 10**12).events == ()
    assert h.s.phase is Phase.RUNNING


def test_a_resend_after_the_end_gets_its_old_reply_and_no_events() -> None:
    g = timed()
    cmd = SubmitAnswer(g.cid(), g.hunt_id, 0, "blue")
    first = g.send(P1, cmd)
    ends_at = g.s.ends_at
    assert ends_at is not None
    again = g.send(P1, cmd, now=ends_at + 1)
    assert again.duplicate
    assert again.events == ()
    assert again.reply == first.reply
    assert g.s.phase is Phase.RUNNING
    assert g.tick(ends_at + 2).events[0] == HuntFinished(
        ends_at + 2, "time_up", tuple(leaderboard(g.s))
    )


# ---- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "given"),
    [
        ("full width", "\uff46\uff55\uff4c\uff4c width"),
        ("full width", "\uff46\uff55\uff4c\uff4c\u3000\uff57\uff49\uff44\uff54\uff48"),
        ("straße", "STRASSE"),
        ("STRASSE", "straße"),
        ("Blue", "blue"),
        ("Blue", "  Blue  "),
        ("New York", "new    york"),
        ("New York", "\tnew\t \nyork\r\n"),
        ("  New   York ", "new york"),
        ("café", "cafe\u0301"),
        ("ﬁsh", "FISH"),
        ("x²", "x2"),
    ],
)
def test_an_answer_matches_after_normalisation(expected: str, given: str) -> None:
    g = running(clues=(AnswerClue("?", expected, 3),))
    d = g.answer(P1, 0, given)
    assert result(d) == {"correct": True, "points": 3, "score": 3}
    assert public(d) == [ClueSolved(g.now, P1, 0, 3, 3)]
    assert answers_match(given, expected)
    assert answers_match(expected, given)


@pytest.mark.parametrize(
    ("expected", "given"),
    [
        ("Blue", "blu"),
        ("Blue", "blue!"),
        ("New York", "newyork"),
        ("New York", "new-york"),
        ("strasse", "strase"),
        ("a b", "ab"),
    ],
)
def test_a_wrong_answer_scores_nothing(expected: str, given: str) -> None:
    g = running(clues=(AnswerClue("?", expected, 3), AnswerClue("?", "other", 4)))
    d = g.answer(P1, 0, given)
    assert result(d) == {"correct": False, "points": 0, "score": 0}
    recorded_only(d, P1)
    m = g.s.member(P1)
    assert m is not None
    assert (m.score, m.solved) == (0, ())


def test_normalize_answer() -> None:
    assert normalize_answer("  \uff28\uff25\uff2c\uff2c\uff2f\t\n  Wörld  ") == "hello wörld"
    assert normalize_answer("Straße") == "strasse"


# ---- check-ins --------------------------------------------------------------------------------


def test_the_offset_helpers_move_the_stated_distance() -> None:
    assert distance_m(*FOUNTAIN, *north_of(*FOUNTAIN, 20)) == pytest.approx(20, abs=0.01)
    assert distance_m(*FOUNTAIN, *east_of(*FOUNTAIN, 30)) == pytest.approx(30, abs=0.01)


@pytest.mark.parametrize("move", [north_of, east_of])
def test_a_check_in_inside_the_default_radius_matches(move: Any) -> None:
    g = running()
    assert g.s.clues[1].radius_m == 25
    d = g.check_in(P1, 1, *move(*FOUNTAIN, 20))
    assert result(d) == {"correct": True, "points": 7, "score": 7}


@pytest.mark.parametrize("move", [north_of, east_of])
def test_a_check_in_outside_the_default_radius_does_not(move: Any) -> None:
    g = running()
    d = g.check_in(P1, 1, *move(*FOUNTAIN, 30))
    assert result(d) == {"correct": False, "points": 0, "score": 0}
    recorded_only(d, P1)


def test_a_check_in_uses_the_clues_own_radius() -> None:
    g = running(clues=(LocationClue("far", 0.0, 0.0, 2, radius_m=100.0),))
    assert result(g.check_in(P1, 0, *north_of(0.0, 0.0, 110)))["correct"] is False
    assert result(g.check_in(P1, 0, *north_of(0.0, 0.0, 90)))["correct"] is True


def test_a_check_in_across_the_antimeridian() -> None:
    g = running(clues=(LocationClue("date line", 0.0, 179.9999, 2),))
    assert distance_m(0.0, 179.9999, 0.0, -179.9999) == pytest.approx(22.24, abs=0.05)
    assert result(g.check_in(P1, 0, 0.0, -179.9999))["correct"] is True
    assert result(g.check_in(P2, 0, 0.0, -179.9990))["correct"] is False


def test_a_check_in_at_the_poles() -> None:
    g = running(
        clues=(LocationClue("north", 90.0, 0.0, 2), LocationClue("south", -89.9999, 45.0, 3))
    )
    # at the pole every longitude is the same place
    assert result(g.check_in(P1, 0, 90.0, -135.0))["correct"] is True
    # 0.0001 degrees of latitude is about 11 m, whatever the longitude
    assert result(g.check_in(P1, 1, -89.9999, -135.0))["correct"] is True
    assert result(g.check_in(P2, 1, -89.999, 45.0))["correct"] is False


# ---- solving: once per clue, scores, wrong kinds ------------------------------------------------


def test_scores_add_up_and_clue_solved_carries_points_and_score() -> None:
    g = running()
    a = g.solve(P1, 0, now=T0 + 100)
    b = g.solve(P1, 1, now=T0 + 200)
    assert result(a) == {"correct": True, "points": 10, "score": 10}
    assert result(b) == {"correct": True, "points": 7, "score": 17}
    assert public(a) == [ClueSolved(T0 + 100, P1, 0, 10, 10)]
    assert public(b) == [ClueSolved(T0 + 200, P1, 1, 7, 17)]
    m = g.s.member(P1)
    assert m is not None
    assert (m.score, m.solved, m.last_solve_at) == (17, (0, 1), T0 + 200)
    other = g.s.member(P2)
    assert other is not None
    assert other.score == 0


def test_a_clue_is_solved_once_per_player() -> None:
    g = running()
    g.solve(P1, 0)
    seq = g.s.seq
    again = g.solve(P1, 0, now=g.now + 5)
    assert result(again) == {"correct": True, "points": 0, "score": 10}
    recorded_only(again, P1)
    wrong = g.answer(P1, 0, "red")
    assert result(wrong) == {"correct": False, "points": 0, "score": 10}
    m = g.s.member(P1)
    assert m is not None
    assert (m.score, m.solved) == (10, (0,))
    assert g.s.seq == seq
    # another player can still solve it
    assert result(g.solve(P2, 0))["points"] == 10


def test_a_clue_stays_solved_across_leave_and_join() -> None:
    g = running()
    g.solve(P1, 0)
    g.leave(P1)
    g.join(P1)
    d = g.solve(P1, 0)
    assert result(d) == {"correct": True, "points": 0, "score": 10}
    assert public(d) == []


@pytest.mark.parametrize("phase", PHASES)
def test_solving_needs_a_member(phase: str) -> None:
    g = PHASES[phase]()
    for who in (P3, ORG):
        d = g.solve(who, 0)
        assert code(d) == ErrorCode.FORBIDDEN
        recorded_only(d, who)


@pytest.mark.parametrize("phase", ["lobby", "finished"])
def test_solving_needs_a_running_hunt(phase: str) -> None:
    g = PHASES[phase]()
    for clue in (0, 1):
        d = g.solve(P1, clue)
        assert code(d) == ErrorCode.CONFLICT
        recorded_only(d, P1)
    m = g.s.member(P1)
    assert m is not None
    assert m.score == 0


def test_a_left_player_cannot_solve() -> None:
    g = running()
    g.leave(P1)
    assert code(g.solve(P1, 0)) == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("clue", [3, 99, -1])
def test_a_clue_index_outside_the_hunt_is_a_bad_request(clue: int) -> None:
    g = running()
    for d in (g.answer(P1, clue, "blue"), g.check_in(P1, clue, *FOUNTAIN)):
        assert code(d) == ErrorCode.BAD_REQUEST
        assert "clue" in d.reply.message
        recorded_only(d, P1)
    m = g.s.member(P1)
    assert m is not None
    assert m.score == 0


def test_the_wrong_kind_of_solve_is_a_bad_request() -> None:
    g = running()
    d = g.answer(P1, 1, "fountain")
    assert code(d) == ErrorCode.BAD_REQUEST
    recorded_only(d, P1)
    d = g.check_in(P1, 0, *FOUNTAIN)
    assert code(d) == ErrorCode.BAD_REQUEST
    recorded_only(d, P1)


# ---- leaderboard --------------------------------------------------------------------------------


def ids(board: Any) -> list[str]:
    return [e["player_id"] for e in board]


def test_leaderboard_score_first_then_earlier_last_solve() -> None:
    g = running()
    g.join(P3)
    g.solve(P2, 1, now=T0 + 100)  # 7
    g.solve(P1, 1, now=T0 + 200)  # 7, later
    g.solve(P3, 2, now=T0 + 50)  # 5
    assert ids(leaderboard(g.s)) == [P2, P1, P3]
    g.solve(P1, 2, now=T0 + 300)  # 12
    assert ids(leaderboard(g.s)) == [P1, P2, P3]
    assert leaderboard(g.s)[0] == {
        "player_id": P1,
        "name": "name-p1",
        "score": 12,
        "solved": [1, 2],
    }


def test_leaderboard_ties_by_join_time_then_player_id() -> None:
    g = Game()
    g.join(PlayerId("pz"), now=T0 + 10)
    g.join(PlayerId("pb"), now=T0 + 20)
    g.join(PlayerId("pa"), now=T0 + 20)
    g.join(PlayerId("p0"), now=T0 + 30)
    assert ids(leaderboard(g.s)) == ["pz", "pa", "pb", "p0"]
    g.start()
    # same score, same last solve time: join time decides, then the id
    g.solve(PlayerId("p0"), 0, now=T0 + 100)
    g.solve(PlayerId("pb"), 0, now=T0 + 100)
    g.solve(PlayerId("pa"), 0, now=T0 + 100)
    assert ids(leaderboard(g.s)) == ["pa", "pb", "p0", "pz"]


def test_solved_lists_are_sorted_in_entries() -> None:
    g = running()
    g.solve(P1, 2)
    g.solve(P1, 0)
    assert leaderboard(g.s)[0]["solved"] == [0, 2]


# ---- all_solved ----------------------------------------------------------------------------------


def test_all_solved_finishes_when_every_member_solved_every_clue() -> None:
    g = running(clues=CLUES[:2])
    for clue in (0, 1):
        g.solve(P1, clue, now=g.now + 1)
    g.solve(P2, 0, now=g.now + 1)
    assert g.s.phase is Phase.RUNNING
    d = g.solve(P2, 1, now=g.now + 1)
    assert result(d) == {"correct": True, "points": 7, "score": 17}
    solved, fin = d.events
    assert isinstance(solved, ClueSolved)
    assert isinstance(fin, HuntFinished)
    assert fin.reason == "all_solved"
    assert fin.at == g.now
    assert ids(fin.leaderboard) == [P1, P2]
    assert [e["score"] for e in fin.leaderboard] == [17, 17]
    assert list(fin.leaderboard) == leaderboard(g.s)
    assert g.s.phase is Phase.FINISHED
    assert g.s.finished_reason == "all_solved"


def test_all_solved_is_checked_again_after_a_leave() -> None:
    g = running(clues=CLUES[:1])
    g.join(P3)
    g.solve(P1, 0)
    g.solve(P3, 0)
    assert g.s.phase is Phase.RUNNING
    seq = g.s.seq
    d = g.leave(P2)
    assert d.reply == Reply(result={"seq": seq + 1})
    left, fin = d.events
    assert left == PlayerLeft(g.now, P2)
    assert isinstance(fin, HuntFinished)
    assert fin.reason == "all_solved"
    assert ids(fin.leaderboard) == [P1, P3]


def test_the_last_member_leaving_does_not_finish() -> None:
    g = running()
    g.leave(P1)
    d = g.leave(P2)
    assert public(d) == [PlayerLeft(g.now, P2)]
    assert g.s.phase is Phase.RUNNING


def test_a_leave_in_the_lobby_never_finishes() -> None:
    g = lobby()
    d = g.leave(P1)
    assert public(d) == [PlayerLeft(g.now, P1)]
    assert g.s.phase is Phase.LOBBY


# ---- idempotency ---------------------------------------------------------------------------------


def resend_is_a_duplicate(g: Game, player: PlayerId, cmd: RuleInput, first: Decision) -> None:
    before = g.s
    again = g.resend(player, cmd)
    assert again.duplicate
    assert not again.remembered
    assert again.events == ()
    assert again.reply == first.reply
    assert g.s == before


def test_every_state_changing_command_resent_gets_the_same_reply() -> None:
    g = Game()
    hid = g.hunt_id
    steps: list[tuple[PlayerId, RuleInput]] = [
        (P1, JoinHunt(g.cid(), hid)),
        (P1, JoinHunt(g.cid(), hid)),  # join again: ok, reply recorded
        (P2, JoinHunt(g.cid(), hid)),
        (ORG, JoinHunt(g.cid(), hid)),  # forbidden
        (P1, SubmitAnswer(g.cid(), hid, 0, "blue")),  # conflict: lobby
        (P2, StartHunt(g.cid(), hid)),  # forbidden
        (ORG, StartHunt(g.cid(), hid)),
        (P1, SubmitAnswer(g.cid(), hid, 0, "red")),
        (P1, SubmitAnswer(g.cid(), hid, 0, "blue")),
        (P1, CheckIn(g.cid(), hid, 1, 0.0, 0.0)),
        (P1, CheckIn(g.cid(), hid, 1, *FOUNTAIN)),
        (P1, SubmitAnswer(g.cid(), hid, 7, "x")),  # bad_request
        (P2, LeaveHunt(g.cid(), hid)),
        (ORG, EndHunt(g.cid(), hid)),
        (P1, LeaveHunt(g.cid(), hid)),  # conflict: finished
    ]
    for player, cmd in steps:
        first = g.send(player, cmd)
        assert not first.duplicate
        assert first.events
        resend_is_a_duplicate(g, player, cmd, first)
    for player, cmd in steps:  # still the same, long after
        assert g.resend(player, cmd).events == ()


def test_a_wrong_answer_resent_after_a_correct_one_keeps_its_old_reply() -> None:
    g = running()
    wrong = SubmitAnswer(g.cid(), g.hunt_id, 0, "red")
    first = g.send(P1, wrong)
    assert result(first) == {"correct": False, "points": 0, "score": 0}
    assert result(g.solve(P1, 0)) == {"correct": True, "points": 10, "score": 10}
    again = g.resend(P1, wrong)
    assert again.duplicate
    assert again.events == ()
    assert result(again) == {"correct": False, "points": 0, "score": 0}


def test_a_correct_answer_resent_is_not_scored_twice() -> None:
    g = running()
    cmd = SubmitAnswer(g.cid(), g.hunt_id, 0, "blue")
    first = g.send(P1, cmd)
    again = g.resend(P1, cmd)
    assert again.reply == first.reply == Reply(result={"correct": True, "points": 10, "score": 10})
    assert again.events == ()
    m = g.s.member(P1)
    assert m is not None
    assert m.score == 10


def test_the_same_command_id_from_another_player_is_a_new_command() -> None:
    g = running()
    cid = g.cid()
    g.send(P1, SubmitAnswer(cid, g.hunt_id, 0, "blue"))
    d = g.send(P2, SubmitAnswer(cid, g.hunt_id, 0, "blue"))
    assert not d.duplicate
    assert result(d) == {"correct": True, "points": 10, "score": 10}


def test_ticks_are_never_remembered_or_duplicates() -> None:
    g = running()
    for t in range(3):
        d = g.tick(T0 + t)
        assert not d.duplicate
        assert d.events == ()
    assert g.s.recent_reply(ORG, Tick().id) is None


@pytest.mark.parametrize("not_kept", sorted(NOT_REMEMBERED))
def test_unavailable_rate_limited_and_internal_replies_are_not_remembered(
    not_kept: ErrorCode,
) -> None:
    g = running()
    cmd = SubmitAnswer(g.cid(), g.hunt_id, 0, "blue")
    ctx = Ctx(P1, "name-p1", g.now)
    failed = Decision((), rejection(not_kept, "try again"))
    assert not failed.remembered
    assert apply(g.s, cmd, ctx, failed) == g.s
    # the host drops the events of a failed decision; a resend then plays
    d = g.send(P1, cmd)
    assert not d.duplicate
    assert result(d)["points"] == 10


def test_ordinary_rejections_are_remembered() -> None:
    for c in (ErrorCode.CONFLICT, ErrorCode.FORBIDDEN, ErrorCode.BAD_REQUEST):
        assert Decision((), rejection(c, "no")).remembered
    assert Decision((), Reply()).remembered
    assert not Decision((), Reply(), duplicate=True).remembered


def test_the_newest_thousand_ids_are_remembered() -> None:
    assert RECENT_IDS_PER_PLAYER == 1000
    g = running()
    first_cmd = SubmitAnswer(CommandId("first"), g.hunt_id, 0, "red")
    first = g.send(P1, first_cmd)
    cmds = [SubmitAnswer(CommandId(f"w{i}"), g.hunt_id, 0, "red") for i in range(1, 1002)]
    for cmd in cmds[:999]:
        g.send(P1, cmd)
    # 1,000 ids so far: the first is still remembered
    assert g.s.recent_reply(P1, first_cmd.id) == first.reply
    assert g.s.recent_reply(P2, first_cmd.id) is None
    for cmd in cmds[999:]:
        g.send(P1, cmd)
    # 1,001 later ids: the first is forgotten, the latest 1,000 are not
    assert g.s.recent_reply(P1, first_cmd.id) is None
    assert all(g.s.recent_reply(P1, c.id) is not None for c in cmds[-1000:])
    again = g.send(P1, first_cmd)
    assert not again.duplicate
    recorded_only(again, P1)
    # another player's memory is their own
    assert len(g.s.recent[P2]) == 1  # its join
    # a remembered id of the last thousand is still a duplicate
    assert g.send(P1, cmds[-1]).duplicate


# ---- views ---------------------------------------------------------------------------------------

SECRET_KEYS = {"answer", "lat", "lon", "radius_m"}


def walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield None, v
            yield from walk(v)


def assert_no_secrets(value: Any, clues: tuple[Clue, ...]) -> None:
    secrets_: set[str | float] = set()
    for c in clues:
        if isinstance(c, AnswerClue):
            secrets_.add(c.answer)
        else:
            secrets_.update({c.lat, c.lon})
    for key, v in walk(value):
        assert key not in SECRET_KEYS, key
        if isinstance(v, str | float):
            assert v not in secrets_, v


def test_the_lobby_view_hides_clue_text() -> None:
    g = lobby(max_players=5, duration_s=60)
    view = hunt_view(g.s)
    assert view == {
        "hunt_id": g.hunt_id,
        "name": "The Hunt",
        "organizer": ORG,
        "status": "lobby",
        "created_at": T0,
        "started_at": None,
        "ends_at": None,
        "clues": [
            {"index": 0, "kind": "answer", "points": 10, "text": None},
            {"index": 1, "kind": "location", "points": 7, "text": None},
            {"index": 2, "kind": "answer", "points": 5, "text": None},
        ],
        "players": leaderboard(g.s),
        "max_players": 5,
    }
    assert ids(view["players"]) == [P1, P2]
    assert_no_secrets(view, CLUES)


@pytest.mark.parametrize("phase", ["running", "finished"])
def test_the_view_shows_clue_text_once_running(phase: str) -> None:
    g = PHASES[phase](duration_s=60)
    g.solve(P1, 0)
    view = hunt_view(g.s)
    assert view["status"] == phase
    assert [c["text"] for c in view["clues"]] == [c.text for c in CLUES]
    assert view["started_at"] is not None
    assert view["ends_at"] == view["started_at"] + 60_000
    assert_no_secrets(view, CLUES)


def test_no_pushed_event_carries_answers_or_coordinates() -> None:
    g = running()
    g.solve(P1, 0)
    g.solve(P1, 1)
    g.check_in(P2, 1, 0.0, 0.0)
    g.leave(P2)
    g.end()
    created = g.events[0]
    assert isinstance(created, HuntCreated)
    assert public_data(created) == {
        "hunt_id": g.hunt_id,
        "name": "The Hunt",
        "organizer": ORG,
        "clue_count": 3,
        "duration_s": None,
        "max_players": None,
    }
    for e in g.events:
        if isinstance(e, ReplyRecorded):
            continue
        assert not isinstance(e, PlayerRegistered)
        assert_no_secrets(public_data(e), CLUES)


def test_seq_counts_the_public_events() -> None:
    g = running()
    g.solve(P1, 0)
    g.answer(P2, 0, "wrong")
    g.join(P1)
    g.leave(P2)
    g.end()
    assert g.s.seq == sum(not isinstance(e, ReplyRecorded) for e in g.events)


def test_remembered_replies_behave_as_the_bounded_ordered_dict_they_replace() -> None:
    reference: dict[CommandId, Reply] = {}
    recent = Recent()
    history = []
    for i in range(2_500):
        cmd = CommandId(f"c{i % 1_700}")  # ids come back after they were forgotten
        reply = Reply(result={"i": i})
        history.append(recent)
        recent = recent.add(cmd, reply)
        reference[cmd] = reply
        while len(reference) > RECENT_IDS_PER_PLAYER:
            del reference[next(iter(reference))]
        if i % 97 == 0:
            assert list(recent.items()) == list(reference.items())
    assert list(recent.items()) == list(reference.items())
    assert all(recent.get(c) == r for c, r in reference.items())
    assert recent.get(CommandId("c1499")) is None and len(recent) == RECENT_IDS_PER_PLAYER
    assert len(history[10]) == 10  # older values are untouched
    rebuilt = Recent()
    for c, r in reference.items():
        rebuilt = rebuilt.add(c, r)
    assert rebuilt == recent  # equal by content, however they were built
    assert rebuilt != history[-1]
    newer = Reply(result={"i": -1})
    for restored in (
        Recent.from_data_items(recent.data_items()),  # what a version-1 snapshot does
        Recent.from_packed(*recent.packed()),  # and a version-2 one
    ):
        assert restored == recent and len(restored) == RECENT_IDS_PER_PLAYER
        assert list(restored.add(CommandId("new"), newer).items()) == list(
            recent.add(CommandId("new"), newer).items()
        )  # and it goes on as the original would: the oldest forgotten, the newest last


def test_a_snapshot_keeps_the_remembered_replies_in_order() -> None:
    g = running()
    for i in range(30):
        g.send(P1, SubmitAnswer(CommandId(f"w{i}"), g.hunt_id, 0, "red"))
    state, replies_version = hunt_from_bytes(hunt_to_bytes(g.s, 7))
    assert state == g.s and replies_version == 7
    assert [c for c, _ in state.recent[P1].items()][-3:] == ["w27", "w28", "w29"]


def test_a_version_1_snapshot_still_reads() -> None:
    """Version 1 kept each remembered reply unpacked, as ``{cmd: reply data}``."""
    g = running()
    for i in range(30):
        g.send(P1, SubmitAnswer(CommandId(f"w{i}"), g.hunt_id, 0, "red"))
    doc = msgpack.unpackb(hunt_to_bytes(g.s, 7))
    assert doc["v"] == 2
    doc["v"] = 1
    doc["body"]["recent"] = {p: dict(rs.data_items()) for p, rs in g.s.recent.items()}
    state, replies_version = hunt_from_bytes(msgpack.packb(doc))
    assert state == g.s and replies_version == 7
    doc["v"] = 3
    with pytest.raises(ValueError, match="not a hunt snapshot"):
        hunt_from_bytes(msgpack.packb(doc))


def test_changed_is_replace_for_the_state_classes() -> None:
    state = HuntState(HuntId("h"), "n", PlayerId("o"), 1, (), 60, 8, members={})
    member = Member(PlayerId("p"), "pat", 5)
    assert changed(state, seq=4, name="m") == dataclasses.replace(state, seq=4, name="m")
    assert changed(member, score=3) == dataclasses.replace(member, score=3)
    assert changed(state) == state and changed(state) is not state
    with pytest.raises(TypeError, match="no field colour"):
        changed(member, colour="red")


def test_an_event_with_its_reply_kept_is_the_event_then_remember() -> None:
    state = HuntState(HuntId("h"), "n", PlayerId("o"), 1, (), 60, 8, members={})
    joined = PlayerJoined(5, PlayerId("p"), "pat")
    reply = Reply(result={"x": 1})
    keep = (PlayerId("p"), CommandId("c1"), reply)
    both = evolve(state, joined, keep)
    assert both == remember(evolve(state, joined), *keep)
    assert both.recent_reply(PlayerId("p"), CommandId("c1")) == reply and both.seq == 1
    with pytest.raises(ValueError, match="is the remembered reply"):
        evolve(state, ReplyRecorded(5, PlayerId("p"), CommandId("c2"), reply), keep)
