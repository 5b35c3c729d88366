"""Random command sequences against a hunt never break its invariants (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.game.events import Event, HuntCreated, HuntFinished, Reply, ReplyRecorded
from actors.game.hunt_rules import Ctx, Decision, RuleInput, Tick, apply, decide
from actors.game.hunt_state import HuntState, Member, Phase, evolve, leaderboard, remember
from actors.game.matching import EARTH_RADIUS_M, answers_match, distance_m
from protocol.messages import (
    AnswerClue,
    CheckIn,
    Clue,
    CommandId,
    CreateHunt,
    EndHunt,
    JoinHunt,
    LeaveHunt,
    LocationClue,
    PlayerId,
    StartHunt,
    SubmitAnswer,
)

SETTINGS = settings(max_examples=150, deadline=None)

ORG = PlayerId("org")
PLAYERS = [PlayerId("p1"), PlayerId("p2"), PlayerId("p3"), ORG]
T0 = 1_700_000_000_000
FOUNTAIN = (48.137, 11.575)
ALL_CLUES: tuple[Clue, ...] = (
    AnswerClue("sky?", "Blue", 10),
    LocationClue("fountain", FOUNTAIN[0], FOUNTAIN[1], 7),
    AnswerClue("wide?", "full width", 5),
)
RIGHT_ANSWERS = {
    0: ["blue", " BLUE\t", "\uff42\uff4c\uff55\uff45"],
    2: ["Full  Width", "\uff46\uff55\uff4c\uff4c width"],
}
NEAR = (FOUNTAIN[0] + math.degrees(10 / EARTH_RADIUS_M), FOUNTAIN[1])
FAR = (FOUNTAIN[0] + math.degrees(40 / EARTH_RADIUS_M), FOUNTAIN[1])


def public(events: tuple[Event, ...] | list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, ReplyRecorded)]


# ---- the strategy ----------------------------------------------------------------

players = st.sampled_from(PLAYERS)
members = st.sampled_from(PLAYERS[:3])
organizer_mostly = st.sampled_from([ORG, ORG, ORG, PlayerId("p1")])
clue_index = st.sampled_from([0, 0, 1, 1, 2, 2, 3])  # 3 is past every hunt's clues

mostly_right = st.sampled_from([True, True, False])
solves = st.one_of(
    st.tuples(st.just("answer"), members, clue_index, mostly_right, st.integers(0, 4)),
    st.tuples(st.just("check_in"), members, clue_index, mostly_right),
    st.tuples(st.just("answer"), players, clue_index, st.booleans(), st.integers(0, 4)),
)
actions = st.one_of(
    solves,
    solves,
    solves,
    st.tuples(st.just("join"), players),
    st.tuples(st.just("leave"), players),
    st.tuples(st.just("start"), organizer_mostly),
    st.tuples(st.just("end"), players),
    st.tuples(st.just("resend"), st.integers(0, 10_000)),
    st.just(("tick",)),
)
pauses = st.one_of(st.just(0), st.integers(0, 2_000), st.integers(0, 40_000))
steps = st.lists(st.tuples(actions, pauses), min_size=3, max_size=45)
configs = st.tuples(
    st.sampled_from([ALL_CLUES[:1], ALL_CLUES[:2], ALL_CLUES]),
    st.sampled_from([None, 10, 30, 120]),
    st.sampled_from([None, None, 1, 2, 3]),
    st.lists(members, unique=True, min_size=1, max_size=3),  # joined before the plan
    st.sampled_from([True, True, False]),  # started before the plan
)


# ---- running a sequence --------------------------------------------------------------


@dataclass
class Step:
    player: PlayerId
    cmd: RuleInput
    ctx: Ctx
    decision: Decision
    before: HuntState | None
    after: HuntState
    resent: bool


@dataclass
class Run:
    clues: tuple[Clue, ...]
    max_players: int | None
    state: HuntState | None = None
    now: int = T0
    n: int = 0
    log: list[Step] = field(default_factory=list)
    sent: list[tuple[PlayerId, RuleInput]] = field(default_factory=list)
    first_reply: dict[tuple[PlayerId, str], Reply] = field(default_factory=dict)

    @property
    def s(self) -> HuntState:
        assert self.state is not None
        return self.state

    def cid(self) -> CommandId:
        self.n += 1
        return CommandId(f"c{self.n}")

    def send(self, player: PlayerId, cmd: RuleInput) -> Step:
        ctx = Ctx(player, f"name-{player}", self.now)
        before = self.state
        resent = not isinstance(cmd, Tick) and (player, cmd.id) in self.first_reply
        d = decide(before, cmd, ctx)
        after = apply(before, cmd, ctx, d)
        step = Step(player, cmd, ctx, d, before, after, resent)
        self.state = after
        self.log.append(step)
        if not isinstance(cmd, Tick) and not d.duplicate:
            self.sent.append((player, cmd))
            self.first_reply.setdefault((player, cmd.id), d.reply)
        return step

    def command(self, action: tuple[Any, ...]) -> tuple[PlayerId, RuleInput]:
        kind = action[0]
        hid = self.s.hunt_id
        if kind == "resend":
            return self.sent[action[1] % len(self.sent)]
        if kind == "tick":
            return ORG, Tick()
        player = action[1]
        cid = self.cid()
        if kind == "join":
            return player, JoinHunt(cid, hid)
        if kind == "leave":
            return player, LeaveHunt(cid, hid)
        if kind == "start":
            return player, StartHunt(cid, hid)
        if kind == "end":
            return player, EndHunt(cid, hid)
        clue = action[2]
        right = action[3]
        if kind == "answer":
            variants = RIGHT_ANSWERS.get(clue, ["nope"])
            text = variants[action[4] % len(variants)] if right else "red"
            return player, SubmitAnswer(cid, hid, clue, text)
        lat, lon = NEAR if right else FAR
        return player, CheckIn(cid, hid, clue, lat, lon)


def play(config: tuple[Any, ...], plan: list[tuple[tuple[Any, ...], int]]) -> Run:
    clues, duration_s, max_players, joined, started = config
    run = Run(clues, max_players)
    run.send(ORG, CreateHunt(run.cid(), "Hunt", clues, duration_s, max_players))
    prelude: list[tuple[tuple[Any, ...], int]] = [(("join", p), 0) for p in joined]
    if started:
        prelude.append((("start", ORG), 0))
    for action, dt in prelude + plan:
        run.now += dt
        player, cmd = run.command(action)
        step = run.send(player, cmd)
        check_step(run, step)
    return run


# ---- invariants -------------------------------------------------------------------------


def rank_key(m: Member) -> tuple[int, float, int, str]:
    last = math.inf if m.last_solve_at is None else m.last_solve_at
    return (-m.score, last, m.joined_at, m.player_id)


def check_state(run: Run, s: HuntState) -> None:
    points = [c.points for c in run.clues]
    for m in s.members.values():
        assert m.score == sum(points[i] for i in m.solved), m
        assert len(set(m.solved)) == len(m.solved), m
        assert all(0 <= i < len(points) for i in m.solved), m
        assert (m.last_solve_at is None) == (not m.solved), m
    board = leaderboard(s)
    active = s.active_members()
    assert sorted(e["player_id"] for e in board) == sorted(m.player_id for m in active)
    keys = [rank_key(s.members[e["player_id"]]) for e in board]
    assert keys == sorted(keys)
    for e in board:
        m = s.members[e["player_id"]]
        assert e == {"player_id": m.player_id, "name": m.name, "score": m.score,
                     "solved": sorted(m.solved)}  # fmt: skip
    assert s.organizer not in s.members
    if s.max_players is not None:
        assert len(active) <= s.max_players
    if s.phase is Phase.RUNNING and active:
        assert not all(len(m.solved) == len(run.clues) for m in active)


def check_step(run: Run, step: Step) -> None:
    before, after, d = step.before, step.after, step.decision
    assert before is not None
    cmd = step.cmd
    if before.phase is Phase.FINISHED:
        assert after.phase is Phase.FINISHED
        assert public(d.events) == []
    if not isinstance(cmd, Tick):
        remembered = before.recent_reply(step.player, cmd.id)
        if step.resent:
            # every id sent here is among the last 1,000: a resend is a duplicate
            assert remembered is not None
        if remembered is not None:
            assert d.duplicate
            assert d.events == ()
            assert d.reply == remembered == run.first_reply[(step.player, cmd.id)]
            assert after == before
        else:
            assert not d.duplicate
            assert d.events, "a state-changing command leaves at least its reply"
            assert after.recent_reply(step.player, cmd.id) == d.reply
    else:
        assert not any(isinstance(e, ReplyRecorded) for e in d.events)
    recorded = [e for e in d.events if isinstance(e, ReplyRecorded)]
    if recorded:
        assert d.events == (ReplyRecorded(run.now, step.player, cmd.id, d.reply),)
    if not d.duplicate and after.phase is Phase.RUNNING:
        # whatever reaches a running hunt at its end finishes it (a resend changes nothing)
        assert after.ends_at is None or run.now < after.ends_at
    finishes = [e for e in d.events if isinstance(e, HuntFinished)]
    assert len(finishes) <= 1
    if finishes:
        assert after.phase is Phase.FINISHED
        assert after.finished_reason == finishes[0].reason
    if d.reply.ok and "score" in d.reply.result and not d.duplicate:
        me = after.members[step.player]
        assert d.reply.result["score"] == me.score
        if d.reply.result["points"]:
            assert d.reply.result["correct"] is True
    check_state(run, after)


def replay(run: Run) -> tuple[HuntState, HuntState]:
    """From None: events only, and events plus the replies apply remembers."""
    events_only: HuntState | None = None
    full: HuntState | None = None
    for step in run.log:
        public_in_step = False
        for e in step.decision.events:
            if isinstance(e, HuntFinished):
                assert full is not None
                assert list(e.leaderboard) == leaderboard(full)
            events_only = evolve(events_only, e)
            full = evolve(full, e)
            public_in_step |= not isinstance(e, ReplyRecorded)
        if public_in_step and step.decision.remembered and not isinstance(step.cmd, Tick):
            assert full is not None
            full = remember(full, step.player, step.cmd.id, step.decision.reply)
    assert events_only is not None
    assert full is not None
    return events_only, full


@SETTINGS
@given(config=configs, plan=steps)
def test_random_command_sequences_keep_the_invariants(
    config: tuple[Any, ...], plan: list[tuple[tuple[Any, ...], int]]
) -> None:
    run = play(config, plan)
    s = run.s
    all_events = [e for step in run.log for e in step.decision.events]
    assert isinstance(all_events[0], HuntCreated)
    assert s.seq == len(public(all_events))
    events_only, full = replay(run)
    assert full == s
    assert replace(events_only, recent={}) == replace(s, recent={})
    # the phase only moves forward, and a finished hunt never changes phase again
    order = {Phase.LOBBY: 0, Phase.RUNNING: 1, Phase.FINISHED: 2}
    phases = [order[step.after.phase] for step in run.log]
    assert phases == sorted(phases)
    assert sum(isinstance(e, HuntFinished) for e in all_events) == (s.phase is Phase.FINISHED)
    # every command resent now gets its first reply and no events
    for player, cmd in run.sent:
        ctx = Ctx(player, "again", run.now + 1)
        d = decide(s, cmd, ctx)
        assert d.duplicate
        assert d.events == ()
        assert d.reply == run.first_reply[(player, cmd.id)]


@SETTINGS
@given(config=configs, plan=steps)
def test_resends_interleaved_with_ticks_change_nothing(
    config: tuple[Any, ...], plan: list[tuple[tuple[Any, ...], int]]
) -> None:
    run = play(config, plan)
    frozen = run.s
    for player, cmd in reversed(run.sent):
        d = decide(frozen, cmd, Ctx(player, "x", run.now))
        assert apply(frozen, cmd, Ctx(player, "x", run.now), d) == frozen


# ---- matching -------------------------------------------------------------------------------

words = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123", min_size=1), min_size=1)
spaces = st.text(alphabet=" \t\n\r\u3000\u00a0", min_size=1, max_size=3)


@SETTINGS
@given(
    ws=words,
    seps=st.lists(spaces, min_size=1),
    ends=st.tuples(st.text(alphabet=" \t\n", max_size=3), st.text(alphabet=" \t\n", max_size=3)),
    wide=st.booleans(),
    upper=st.booleans(),
)
def test_answers_match_whatever_the_spacing_width_and_case(
    ws: list[str], seps: list[str], ends: tuple[str, str], wide: bool, upper: bool
) -> None:
    expected = " ".join(ws)
    given_ = ws[0]
    for i, w in enumerate(ws[1:]):
        given_ += seps[i % len(seps)] + w
    if upper:
        given_ = given_.upper()
    if wide:
        given_ = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in given_)
    given_ = ends[0] + given_ + ends[1]
    assert answers_match(given_, expected)
    assert answers_match(expected, given_)
    # gluing two words together is another answer
    if len(ws) > 1:
        assert not answers_match("".join(ws), expected)


@SETTINGS
@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-180, 180),
    metres=st.floats(0, 5000),
)
def test_distance_is_great_circle(lat: float, lon: float, metres: float) -> None:
    north = lat + math.degrees(metres / EARTH_RADIUS_M)
    assert math.isclose(distance_m(lat, lon, north, lon), metres, abs_tol=1e-3)
    assert math.isclose(distance_m(north, lon, lat, lon), metres, abs_tol=1e-3)
    # the same place named across the antimeridian
    other = lon - 360 if lon > 0 else lon + 360
    assert distance_m(lat, lon, lat, other) < 1e-3
