"""``BotClient``: a ``GameClient`` that also knows what it joined, checks what
``resume`` and solves promise, and can drop and resume its connection.

Extra checks, each counted in ``violations``:

- after ``join_hunt`` (when not already a member) the hunt's next event is
  ``seq + 1`` of the reply; after ``leave_hunt`` the count starts afresh;
- by a ``resume`` reply with ``seq``, every event up to ``seq`` has arrived;
- ``clue_solved`` events: ``data.score`` is the previous score of that player
  plus ``data.points`` (checked for hunts this client followed from their
  start);
- ``submit_answer`` / ``check_in`` replies: ``score`` is the sum of the points
  of this player's correct answers in that hunt, ``points`` is 0 for a wrong
  or repeated answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from server.client import GameClient

EventSink = Callable[[dict[str, Any], float], None]


class BotClient(GameClient):
    def __init__(
        self,
        url: str,
        *,
        name: str,
        reply_timeout_s: float = 15.0,
        event_sink: EventSink | None = None,
    ) -> None:
        super().__init__(url, name=name, reply_timeout_s=reply_timeout_s, keep_events=False)
        self.event_sink = event_sink
        self.joined: set[str] = set()
        self.organized: set[str] = set()
        self.followed_from_start: set[str] = set()
        self.finished: set[str] = set()
        self.score: dict[str, int] = {}  # my score per hunt, from my correct answers
        self.solved: dict[str, set[int]] = {}
        self.event_scores: dict[str, dict[str, int]] = {}  # hunt -> player -> score
        self.events_seen = 0

    # ---- replies ------------------------------------------------------------------

    def on_reply(self, t: str, fields: dict[str, Any], reply: dict[str, Any]) -> None:
        if reply.get("t") == "error":
            if reply.get("code") == "conflict" and "hunt_id" in fields:
                self.finished.add(fields["hunt_id"])
            return
        hunt = str(fields.get("hunt_id") or reply.get("hunt_id") or "")
        if t == "create_hunt" and hunt:
            self.organized.add(hunt)
        elif t == "join_hunt":
            if hunt not in self.joined:
                self.joined.add(hunt)
                log = self.hunts[hunt]
                log.last, log.resume_after = reply.get("seq"), None
                self.score.setdefault(hunt, 0)
        elif t == "leave_hunt":
            self.joined.discard(hunt)
            log = self.hunts[hunt]
            log.last, log.resume_after = None, None
            self.followed_from_start.discard(hunt)
        elif t == "resume":
            self._resumed(hunt, fields["after_seq"], reply.get("seq"))
        elif t in ("submit_answer", "check_in"):
            self._scored(hunt, fields["clue"], reply)

    def _resumed(self, hunt: str, after: int, seq: Any) -> None:
        log = self.hunts[hunt]
        if not isinstance(seq, int):
            self.violations.append(f"resume {hunt}: reply without seq")
            return
        if log.resume_after is not None:  # nothing arrived
            if seq > after:
                self.violations.append(f"resume {hunt} after {after}: nothing before seq {seq}")
            log.last, log.resume_after = max(seq, after), None
        elif log.last is None or log.last < seq:  # live events may come before the reply
            self.violations.append(f"resume {hunt} after {after}: last seen {log.last}, seq {seq}")

    def _scored(self, hunt: str, clue: int, reply: dict[str, Any]) -> None:
        solved = self.solved.setdefault(hunt, set())
        before = self.score.get(hunt, 0)
        points, score = reply.get("points"), reply.get("score")
        if reply.get("correct") and clue not in solved:
            solved.add(clue)
            expected = before + (points if isinstance(points, int) else 0)
            if not isinstance(points, int) or points <= 0:
                self.violations.append(f"{hunt} clue {clue}: correct but points {points}")
        else:
            expected = before
            if points != 0:
                self.violations.append(f"{hunt} clue {clue}: wrong or repeated, points {points}")
        if score != expected:
            self.violations.append(f"{hunt}: score {score}, sum of my solves {expected}")
        self.score[hunt] = expected

    # ---- events -------------------------------------------------------------------

    def on_event(self, m: dict[str, Any]) -> None:
        self.events_seen += 1
        hunt, kind = m["hunt_id"], m.get("kind")
        if kind in ("hunt_created", "hunt_started"):
            self.followed_from_start.add(hunt)
            self.event_scores[hunt] = {}
        elif kind == "clue_solved" and hunt in self.followed_from_start:
            data = m.get("data") or {}
            scores = self.event_scores.setdefault(hunt, {})
            player = str(data.get("player_id"))
            expected = scores.get(player, 0) + (data.get("points") or 0)
            if data.get("score") != expected:
                got = data.get("score")
                self.violations.append(f"{hunt} #{m['seq']}: {player} score {got}, sum {expected}")
            scores[player] = expected
        elif kind == "hunt_finished":
            self.finished.add(hunt)
        if self.event_sink is not None:
            self.event_sink(m, time.time() * 1000 - m["at"])

    # ---- dropping and resuming ------------------------------------------------------

    async def drop(self, abort: bool = True) -> None:
        """Lose the connection (abort: no close handshake) and forget what was
        in flight on it; ``connect`` again, ``hello`` with ``token``, then
        ``resume`` each of ``resume_points()``."""
        assert self.ws is not None
        if abort:
            self.ws.transport.abort()
        await self.close()
        self._waiting.clear()
        self._commands.clear()
        self.closed = None

    def resume_points(self) -> list[tuple[str, int]]:
        """Every hunt it organizes or has joined, with the last seq it saw."""
        return [(h, self.hunts[h].last or 0) for h in sorted(self.organized | self.joined)]
