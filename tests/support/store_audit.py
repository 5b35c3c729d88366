"""Checks a ``Play`` record against the event store itself, read directly.

Every state-changing command answered ``ok`` must have left exactly one record
in its hunt's streams, found by the command id and player the entity stores
with it: ``hunt_created``, ``hunt_started``, ``hunt_finished``, ``player_left``
or ``clue_solved`` (a solve that earned points) in ``hunt-<id>``, a
``reply_recorded`` in ``hunt-<id>-replies`` for a command that changed nothing
(a wrong answer, a re-join). Of a player's ok'd joins of a hunt exactly one made
its ``player_joined``. Streams must be contiguous from seq 1. A record no ok'd
command accounts for counts as duplicated, as does a clue solved twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from actors.game.events import ReplyRecorded, public_data
from actors.game.ids import hunt_replies_stream, hunt_stream, player_stream
from actors.shard.entity import read_event
from persistence.base import EventStore, StoredEvent
from tests.support.play import STATE_CHANGING, Play, Sent

MAKES = {
    "create_hunt": "hunt_created",
    "start_hunt": "hunt_started",
    "end_hunt": "hunt_finished",
    "leave_hunt": "player_left",
}


@dataclass
class Audit:
    acknowledged: int = 0  # state-changing commands answered ok
    events: int = 0  # stored events read and checked
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    streams: dict[str, list[StoredEvent]] = field(default_factory=dict)  # hunt -> events

    def problem(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)


def audit(play: Play, store: EventStore) -> Audit:
    a = Audit()
    # (player, command id, record type) -> where it is stored
    records: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    solvers: dict[tuple[str, str, int], set[str]] = defaultdict(set)  # -> command ids
    for hunt in play.hunts:
        main = _read(a, store, hunt_stream(hunt))
        a.streams[hunt] = main
        for ev in main:
            meta = ev.metadata
            records[(meta.get("player", ""), meta.get("cmd", ""), ev.type)].append(
                f"{ev.stream}#{ev.seq}"
            )
            if ev.type == "clue_solved":
                solvers[(hunt, ev.data["player_id"], ev.data["clue"])].add(meta.get("cmd", ""))
        for ev in _read(a, store, hunt_replies_stream(hunt)):
            recorded = read_event(ev)
            assert isinstance(recorded, ReplyRecorded)
            records[(recorded.player_id, recorded.cmd, ev.type)].append(f"{ev.stream}#{ev.seq}")
    for player in play.ids.values():
        _read(a, store, player_stream(player))
    for (hunt, player, clue), cmds in solvers.items():
        if len(cmds) > 1:  # (one command stored twice counts once, below)
            a.duplicated += len(cmds) - 1
            a.problem(f"{player} solved clue {clue} of {hunt} by {len(cmds)} commands")

    joins: dict[tuple[str, str], list[Sent]] = defaultdict(list)
    for sent in play.log:
        if sent.t not in STATE_CHANGING:
            continue
        assert sent.reply is not None, f"outcome of {sent.t} {sent.cid} never settled"
        if not sent.ok:
            continue
        a.acknowledged += 1
        if sent.t == "join_hunt":
            joins[(play.ids[sent.who], sent.fields["hunt_id"])].append(sent)
            continue
        _expect(a, records, play.ids[sent.who], sent.cid, _record_type(sent))
    for (player, hunt), sents in joins.items():
        made = [s for s in sents if records.get((player, s.cid, "player_joined"))]
        if not made:
            a.lost += 1
            a.problem(f"{player} joined {hunt} ({len(sents)} ok'd joins): no player_joined")
            continue
        for s in sents:
            _expect(
                a, records, player, s.cid, "player_joined" if s is made[0] else "reply_recorded"
            )
    for key, where in records.items():
        a.duplicated += len(where)
        a.problem(f"stored, but no ok'd command accounts for it: {key} at {where}")
    return a


def _record_type(sent: Sent) -> str:
    if sent.t in ("submit_answer", "check_in"):
        assert sent.reply is not None
        earned = sent.reply.get("correct") and sent.reply.get("points", 0) > 0
        return "clue_solved" if earned else "reply_recorded"
    return MAKES[sent.t]


def _expect(
    a: Audit, records: dict[tuple[str, str, str], list[str]], player: str, cid: str, kind: str
) -> None:
    where = records.pop((player, cid, kind), [])
    if not where:
        a.lost += 1
        a.problem(f"ok'd command {cid} of {player}: no {kind} stored")
    elif len(where) > 1:
        a.duplicated += len(where) - 1
        a.problem(f"ok'd command {cid} of {player}: {kind} stored {len(where)} times: {where}")


def _read(a: Audit, store: EventStore, stream: str) -> list[StoredEvent]:
    events = list(store.read(stream))
    a.events += len(events)
    seqs = [ev.seq for ev in events]
    if seqs != list(range(1, len(seqs) + 1)):
        a.problem(f"{stream}: seqs not contiguous from 1: {seqs[:10]}...")
        a.duplicated += len(seqs) - len(set(seqs))
    return events


def frame_of(hunt: str, ev: StoredEvent) -> dict[str, Any]:
    """The push frame a client gets for a stored hunt event."""
    data = public_data(read_event(ev))  # type: ignore[arg-type]
    return {
        "t": "event",
        "hunt_id": hunt,
        "seq": ev.seq,
        "kind": ev.type,
        "at": ev.timestamp,
        "data": data,
    }


def scores(events: list[StoredEvent]) -> dict[str, int]:
    """player id -> points of its stored solves."""
    got: Counter[str] = Counter()
    for ev in events:
        if ev.type == "clue_solved":
            got[ev.data["player_id"]] += ev.data["points"]
    return dict(got)
