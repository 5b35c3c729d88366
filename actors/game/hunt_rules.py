"""A hunt's rules: ``decide(state, command, ctx) -> Decision``, one function per phase.

A decision is the events to store (possibly none) and the reply. The rules
take the time as ``ctx.now`` and never read a clock. ``apply`` evolves a state
by a decision, as the host does after the events are stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from actors.game.events import (
    ClueDef,
    ClueSolved,
    Event,
    HuntCreated,
    HuntFinished,
    HuntStarted,
    PlayerJoined,
    PlayerLeft,
    Reply,
    ReplyRecorded,
    rejection,
)
from actors.game.hunt_state import HuntState, Kept, Phase, evolve, leaderboard, remember
from actors.game.ids import hunt_id_for
from actors.game.matching import answers_match, distance_m
from protocol.errors import NOT_REMEMBERED, ErrorCode
from protocol.messages import (
    AnswerClue,
    CheckIn,
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

SYSTEM = PlayerId("")
VIEW_SEQ = "view_seq"  # in a join's reply: the seq its hunt view is taken at
_NO_ID = CommandId("")


@dataclass(frozen=True, slots=True)
class Tick:
    """The host's clock reaching the hunt: finishes it when its time is up."""

    id: CommandId = _NO_ID


@dataclass(frozen=True, slots=True)
class AdminEnd:
    """An admin ends the hunt (not as its organizer); ``id`` is unique per action."""

    id: CommandId


HuntRuleCommand = CreateHunt | JoinHunt | LeaveHunt | StartHunt | EndHunt | SubmitAnswer | CheckIn
RuleInput = HuntRuleCommand | Tick | AdminEnd


@dataclass(frozen=True, slots=True)
class Ctx:
    player_id: PlayerId
    name: str
    now: int


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[Event, ...]
    reply: Reply
    duplicate: bool = False

    @property
    def remembered(self) -> bool:
        """Whether the reply is kept for a resend of the same command id."""
        return not self.duplicate and self.reply.code not in NOT_REMEMBERED


OK = Reply()


def decide(state: HuntState | None, cmd: RuleInput, ctx: Ctx) -> Decision:
    if isinstance(cmd, CreateHunt):
        return _create(state, cmd, ctx)
    if state is None:
        return Decision((), rejection(ErrorCode.NOT_FOUND, "no such hunt"))
    if not isinstance(cmd, Tick):
        cached = state.recent_reply(ctx.player_id, cmd.id)
        if cached is not None:
            return Decision((), cached, duplicate=True)
    pre = _time_up(state, ctx.now)
    if pre:
        state = evolve(state, pre[0])
    decision = _PHASES[state.phase](state, cmd, ctx)
    events = pre + decision.events
    if not events and not isinstance(cmd, Tick) and decision.remembered:
        events = (ReplyRecorded(ctx.now, ctx.player_id, cmd.id, decision.reply),)
    return Decision(events, decision.reply)


def apply(state: HuntState | None, cmd: RuleInput, ctx: Ctx, decision: Decision) -> HuntState:
    """The state after the decision's events, with its reply remembered (in the copy of
    the state its last event makes, unless that event makes the hunt)."""
    events = decision.events
    keep: Kept | None = None
    public = any(not isinstance(e, ReplyRecorded) for e in events)
    if public and decision.remembered and not isinstance(cmd, Tick):
        keep = (ctx.player_id, cmd.id, decision.reply)
    for i, event in enumerate(events):
        if keep is not None and i == len(events) - 1 and not isinstance(event, HuntCreated):
            state, keep = evolve(state, event, keep), None
        else:
            state = evolve(state, event)
    if state is None:
        raise ValueError("a decision without events cannot make a hunt")
    if keep is not None:
        state = remember(state, *keep)
    return state


def _create(state: HuntState | None, cmd: CreateHunt, ctx: Ctx) -> Decision:
    hunt_id = hunt_id_for(ctx.player_id, cmd.id)
    reply = Reply(result={"hunt_id": hunt_id})
    if state is not None:
        if state.organizer != ctx.player_id:
            return Decision((), rejection(ErrorCode.CONFLICT, "hunt_id: already taken"))
        return Decision((), reply, duplicate=True)
    clues = tuple(_clue_def(c) for c in cmd.clues)
    created = HuntCreated(
        ctx.now, hunt_id, cmd.name, ctx.player_id, clues, cmd.duration_s, cmd.max_players
    )
    return Decision((created,), reply)


def _clue_def(c: AnswerClue | LocationClue) -> ClueDef:
    if isinstance(c, AnswerClue):
        return ClueDef(c.text, c.points, answer=c.answer)
    assert isinstance(c, LocationClue)
    return ClueDef(c.text, c.points, lat=c.lat, lon=c.lon, radius_m=c.radius_m)


def _time_up(state: HuntState, now: int) -> tuple[Event, ...]:
    if state.phase is Phase.RUNNING and state.ends_at is not None and now >= state.ends_at:
        return (HuntFinished(now, "time_up", tuple(leaderboard(state))),)
    return ()


# ---- one decide function per phase ------------------------------------------


def _lobby(state: HuntState, cmd: RuleInput, ctx: Ctx) -> Decision:
    match cmd:
        case JoinHunt():
            return _join(state, ctx)
        case LeaveHunt():
            return _leave(state, ctx)
        case StartHunt():
            return _organizer_only(state, ctx) or _start(state, ctx)
        case EndHunt():
            return _organizer_only(state, ctx) or _finish(state, ctx, "ended")
        case AdminEnd():
            return _finish(state, ctx, "ended_by_admin")
        case SubmitAnswer() | CheckIn():
            return _members_only(state, ctx) or _conflict("the hunt has not started")
    return Decision((), OK)


def _running(state: HuntState, cmd: RuleInput, ctx: Ctx) -> Decision:
    match cmd:
        case JoinHunt():
            return _join(state, ctx)
        case LeaveHunt():
            return _leave(state, ctx)
        case StartHunt():
            return _organizer_only(state, ctx) or _conflict("the hunt is already running")
        case EndHunt():
            return _organizer_only(state, ctx) or _finish(state, ctx, "ended")
        case AdminEnd():
            return _finish(state, ctx, "ended_by_admin")
        case SubmitAnswer() | CheckIn():
            return _members_only(state, ctx) or _solve(state, cmd, ctx)
    return Decision((), OK)


def _finished(state: HuntState, cmd: RuleInput, ctx: Ctx) -> Decision:
    match cmd:
        case StartHunt() | EndHunt():
            return _organizer_only(state, ctx) or _conflict("the hunt is finished")
        case SubmitAnswer() | CheckIn() | LeaveHunt():
            return _members_only(state, ctx) or _conflict("the hunt is finished")
        case JoinHunt() | AdminEnd():
            return _conflict("the hunt is finished")
    return Decision((), OK)


_PHASES: dict[Phase, Callable[[HuntState, RuleInput, Ctx], Decision]] = {
    Phase.LOBBY: _lobby,
    Phase.RUNNING: _running,
    Phase.FINISHED: _finished,
}


# ---- the moves ------------------------------------------------------------------


def _conflict(message: str) -> Decision:
    return Decision((), rejection(ErrorCode.CONFLICT, message))


def _organizer_only(state: HuntState, ctx: Ctx) -> Decision | None:
    if ctx.player_id != state.organizer:
        return Decision((), rejection(ErrorCode.FORBIDDEN, "only the organizer may do this"))
    return None


def _members_only(state: HuntState, ctx: Ctx) -> Decision | None:
    if state.member(ctx.player_id) is None:
        return Decision((), rejection(ErrorCode.FORBIDDEN, "not a member of this hunt"))
    return None


def _join(state: HuntState, ctx: Ctx) -> Decision:
    """The reply carries the hunt's view as of the join (``view_seq``), also when resent."""
    if ctx.player_id == state.organizer:
        return Decision((), rejection(ErrorCode.FORBIDDEN, "the organizer does not play"))
    if state.member(ctx.player_id) is not None:
        return Decision((), Reply(with_view=True, result={VIEW_SEQ: state.seq}))
    if state.max_players is not None and len(state.active_members()) >= state.max_players:
        return _conflict("the hunt is full")
    joined = Reply(with_view=True, result={VIEW_SEQ: state.seq + 1})
    return Decision((PlayerJoined(ctx.now, ctx.player_id, ctx.name),), joined)


def _leave(state: HuntState, ctx: Ctx) -> Decision:
    refused = _members_only(state, ctx)
    if refused:
        return refused
    left = PlayerLeft(ctx.now, ctx.player_id)
    finished = _all_solved(evolve(state, left), ctx.now) if state.phase is Phase.RUNNING else ()
    return Decision((left, *finished), Reply(result={"seq": state.seq + 1}))


def _start(state: HuntState, ctx: Ctx) -> Decision:
    ends_at = None if state.duration_s is None else ctx.now + state.duration_s * 1000
    return Decision((HuntStarted(ctx.now, ends_at),), OK)


def _finish(state: HuntState, ctx: Ctx, reason: str) -> Decision:
    return Decision((HuntFinished(ctx.now, reason, tuple(leaderboard(state))),), OK)


def _all_solved(state: HuntState, now: int) -> tuple[Event, ...]:
    members = state.active_members()
    if state.phase is not Phase.RUNNING or not members:
        return ()
    if all(len(m.solved) == len(state.clues) for m in members):
        return (HuntFinished(now, "all_solved", tuple(leaderboard(state))),)
    return ()


def _solve(state: HuntState, cmd: SubmitAnswer | CheckIn, ctx: Ctx) -> Decision:
    me = state.member(ctx.player_id)
    assert me is not None
    if not 0 <= cmd.clue < len(state.clues):
        return Decision((), rejection(ErrorCode.BAD_REQUEST, "clue: no such clue in this hunt"))
    clue = state.clues[cmd.clue]
    if isinstance(cmd, SubmitAnswer) != (clue.kind == "answer"):
        kind = "an answer" if clue.kind == "answer" else "a check_in"
        return Decision((), rejection(ErrorCode.BAD_REQUEST, f"clue: this clue takes {kind}"))
    correct = _matches(clue, cmd)
    if not correct or cmd.clue in me.solved:
        return Decision((), Reply(result={"correct": correct, "points": 0, "score": me.score}))
    score = me.score + clue.points
    solved = ClueSolved(ctx.now, ctx.player_id, cmd.clue, clue.points, score)
    finished = _all_solved(evolve(state, solved), ctx.now)
    reply = Reply(result={"correct": True, "points": clue.points, "score": score})
    return Decision((solved, *finished), reply)


def _matches(clue: ClueDef, cmd: SubmitAnswer | CheckIn) -> bool:
    if isinstance(cmd, SubmitAnswer):
        return clue.answer is not None and answers_match(cmd.answer, clue.answer)
    assert clue.lat is not None and clue.lon is not None and clue.radius_m is not None
    return distance_m(cmd.lat, cmd.lon, clue.lat, clue.lon) <= clue.radius_m
