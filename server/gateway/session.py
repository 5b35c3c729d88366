"""What the gateway does with each command: checks, routing, replies.

No game rule lives here: the session authenticates, applies the rate limit,
routes each command to its entity's shard and turns the entity's answer into
a reply frame. Protocol errors become ``error`` replies in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from actors.game.ids import (
    EntityKind,
    hash_secret,
    hunt_id_for,
    new_player_id,
    new_token,
    split_token,
)
from actors.game.player import Authenticate, Register
from actors.messages import Resumed, ShardReply, WireReply, as_wire
from protocol import codec
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    CheckIn,
    CommandId,
    CreateHunt,
    Error,
    Hello,
    HuntId,
    JoinHunt,
    LeaveHunt,
    Ok,
    Ping,
    Resume,
    SubmitAnswer,
    Welcome,
)
from server.gateway import admission
from server.gateway.bridge import Bridge
from server.gateway.connection import CLOSE_POLICY, Connection, ConnState
from server.gateway.feeds import Feed, Hub
from server.gateway.guard import Guard, Limits
from server.gateway.metrics import Metrics

log = logging.getLogger("treasure.session")
RESTORED_HOLD_S = 10.0  # only a client that neither resumes nor plays waits this long


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Sent:
    """A hunt command on its way: who sent it, and the feed it opened, if any."""

    conn: Connection
    hunt: HuntId
    cmd: Any
    t: str
    started: float
    fresh: Feed | None


class Sessions:
    def __init__(
        self,
        bridge: Bridge,
        hub: Hub,
        metrics: Metrics,
        *,
        bad_frame_limit: int,
        guard: Guard | None = None,
    ) -> None:
        self.bridge, self.hub, self.metrics = bridge, hub, metrics
        self.guard = guard or Guard(Limits())
        self.bad_frame_limit = bad_frame_limit
        self.by_player: dict[str, set[Connection]] = {}

    # ---- frames in -----------------------------------------------------------

    def on_frame(self, conn: Connection, frame: bytes | str) -> None:
        try:
            m = codec.decode_frame(frame)
            t, cid = codec.read_envelope(m)
        except ProtocolError as exc:
            self._bad(conn, exc)
            return
        conn.bad_frames = 0
        started = time.perf_counter()
        if not conn.bucket.take():
            self._error(conn, cid, ErrorCode.RATE_LIMITED, "too many commands; slow down", t)
            return
        if conn.state is not ConnState.READY and t != "hello":
            self._error(conn, cid, ErrorCode.NOT_AUTHENTICATED, "send hello first", t)
            return
        try:
            cmd = codec.parse_command(m)
        except ProtocolError as exc:
            self._error(conn, cid, exc.code, exc.message, t)
            return
        self.metrics.command(t)
        if isinstance(cmd, SubmitAnswer | CheckIn) and not self.guard.allow_answer(conn.player_id):
            self._error(conn, cid, ErrorCode.RATE_LIMITED, "too many answers; slow down", t)
            return
        self._dispatch(conn, cmd, t, started)

    def _bad(self, conn: Connection, exc: ProtocolError) -> None:
        conn.bad_frames += 1
        self._error(conn, exc.re, exc.code, exc.message, "?")
        if conn.bad_frames >= self.bad_frame_limit:
            conn.close(CLOSE_POLICY, f"{conn.bad_frames} bad frames in a row", flush=True)

    def _error(self, conn: Connection, re: str | None, code: str, message: str, t: str) -> None:
        self.metrics.outcome(t, code, None)
        conn.send(codec.encode(Error(re, code, message)))

    # ---- routing ----------------------------------------------------------------

    def _dispatch(self, conn: Connection, cmd: Any, t: str, started: float) -> None:
        if isinstance(cmd, Ping):
            self._reply(conn, cmd.id, t, started, {"t": "ok", "server_time": now_ms()})
        elif isinstance(cmd, Hello):
            self._hello(conn, cmd, started)
        elif isinstance(cmd, CreateHunt):
            hunt = hunt_id_for(conn.player_id, cmd.id)  # type: ignore[arg-type]
            self._hunt(conn, hunt, cmd, t, started, subscribe_first=True)
        elif isinstance(cmd, JoinHunt):
            self._hunt(conn, cmd.hunt_id, cmd, t, started, subscribe_first=True)
        else:
            self._hunt(conn, cmd.hunt_id, cmd, t, started)

    def _hunt(
        self,
        conn: Connection,
        hunt: HuntId,
        cmd: Any,
        t: str,
        started: float,
        subscribe_first: bool = False,
    ) -> None:
        feed = conn.feeds.get(hunt)
        fresh = None
        if subscribe_first and feed is None:
            # Follow the hunt before the command reaches it, holding its events until the
            # reply: the events of the batch that answers it may be handled before the reply.
            fresh = self.hub.subscribe(conn, hunt, None)
            self.hub.hold(fresh)
        if isinstance(cmd, Resume) and feed is not None:
            conn.restored.discard(hunt)  # from now on its resume releases it, in order
            self.hub.hold(feed)
        sent = Sent(conn, hunt, cmd, t, started, fresh)
        then = functools.partial(self._hunt_done, sent)
        self.bridge.send(EntityKind.HUNT, hunt, cmd, then, conn.player_id, conn.name)

    def _hunt_done(self, sent: Sent, reply: ShardReply) -> None:
        msg = self._resumed(sent, reply) if isinstance(sent.cmd, Resume) else as_wire(reply)
        # An ok'd create/join/leave has also linked the player to the hunt (or unlinked it)
        # in the store, with the hunt's events: a hello after any crash restores it.
        if msg.get("t") == "ok" and isinstance(sent.cmd, CreateHunt | JoinHunt | LeaveHunt):
            self._follow(sent, msg)
        self._hunt_answered(sent, msg)

    def _follow(self, sent: Sent, msg: WireReply) -> None:
        """The player's other connections follow the hunts it plays in from the moment
        the hunt decided (its events may already be on their way); a leaver stops at once.
        The sending connection itself follows when it gets its reply."""
        conn, hunt = sent.conn, sent.hunt
        for c in self.by_player.get(conn.player_id, {conn}):
            if isinstance(sent.cmd, LeaveHunt):
                self.hub.unsubscribe(c, hunt)
            elif c is not conn:
                self.hub.subscribe(c, hunt, msg.get("seq"))

    def _hunt_answered(self, sent: Sent, msg: WireReply) -> None:
        conn, hunt, cmd, fresh = sent.conn, sent.hunt, sent.cmd, sent.fresh
        ok = msg.get("t") == "ok"
        if (
            ok
            and not isinstance(cmd, Resume)
            and fresh is None
            and isinstance(cmd, CreateHunt | JoinHunt)
        ):
            feed = self.hub.subscribe(conn, hunt, msg.get("seq"))
            if isinstance(cmd, JoinHunt) and hunt in conn.restored:
                conn.restored.discard(hunt)  # the join's seq is a baseline, as a resume's is
                self.hub.release(conn, hunt, feed, [], msg["seq"])
        self._reply(conn, cmd.id, sent.t, sent.started, msg)
        if conn.feeds.get(hunt) is fresh and fresh is not None:
            if not ok:
                self.hub.unsubscribe(conn, hunt)
            elif isinstance(cmd, JoinHunt):
                self.hub.release(conn, hunt, fresh, [], msg["seq"])
            else:
                self.hub.unhold(conn, hunt, fresh)

    def _release_restored(self, conn: Connection) -> None:
        """Deliver what restored feeds held: the client is not resuming them."""
        for hunt in list(conn.restored):
            feed = conn.feeds.get(hunt)
            if feed is not None:
                self.hub.unhold(conn, hunt, feed)
        conn.restored.clear()

    def _resumed(self, sent: Sent, reply: ShardReply) -> WireReply:
        """Delivers what a resume's reply carries; the reply for the client."""
        conn, hunt, cmd = sent.conn, sent.hunt, sent.cmd
        assert isinstance(cmd, Resume)
        if not isinstance(reply, Resumed):
            feed = conn.feeds.get(hunt)
            if feed is not None:
                self.hub.release(conn, hunt, feed, [], feed.last or 0)
            return reply
        feed = conn.feeds.get(hunt) or self.hub.subscribe(conn, hunt, None)
        feed.last = cmd.after_seq
        self.hub.release(conn, hunt, feed, reply.frames, reply.seq)
        return as_wire(reply)

    def fetch(self, conn: Connection, hunt: str, after: int) -> asyncio.Future[ShardReply]:
        """Events after ``after`` for a gap in a connection's feed."""
        cmd = Resume(CommandId("~gap"), HuntId(hunt), after)
        return self.bridge.submit(EntityKind.HUNT, hunt, cmd, conn.player_id, conn.name)

    # ---- hello ----------------------------------------------------------------

    def _hello(self, conn: Connection, cmd: Hello, started: float) -> None:
        if conn.state is not ConnState.AWAITING_HELLO:
            self._error(conn, cmd.id, ErrorCode.BAD_REQUEST, "hello: already sent", "hello")
            return
        if cmd.protocol not in codec.VERSIONS:
            versions = ", ".join(map(str, codec.VERSIONS))
            msg = f"protocol: {cmd.protocol} is not spoken here (speaks {versions})"
            self._error(conn, cmd.id, ErrorCode.UNSUPPORTED_PROTOCOL, msg, "hello")
            return
        if cmd.token is None:
            if not self.guard.allow_registration(conn.remote):
                msg = "too many registrations from your address; slow down"
                self._error(conn, cmd.id, ErrorCode.RATE_LIMITED, msg, "hello")
                return
            player = new_player_id()
            token, token_hash = new_token(player)
            request = Register(cmd.name or "", token_hash)
        else:
            parts = split_token(cmd.token)
            if parts is None:
                self._error(conn, cmd.id, ErrorCode.UNAUTHORIZED, "unknown token", "hello")
                return
            player, token = parts[0], cmd.token
            request = Authenticate(hash_secret(parts[1]))  # type: ignore[assignment]
        conn.state = ConnState.HELLO_PENDING
        then = functools.partial(self._welcome, conn, cmd, player, token, started)
        self.bridge.send(EntityKind.PLAYER, player, request, then, player)

    def _welcome(
        self,
        conn: Connection,
        cmd: Hello,
        player: str,
        token: str,
        started: float,
        reply: ShardReply,
    ) -> None:
        msg = as_wire(reply)
        if msg.get("t") != "ok":
            conn.state = ConnState.AWAITING_HELLO
            self._reply(conn, cmd.id, "hello", started, msg)
            return
        conn.state, conn.player_id, conn.name = ConnState.READY, player, msg["name"]
        admission.out_of_lobby(conn.ws)
        self.by_player.setdefault(player, set()).add(conn)
        loop = asyncio.get_running_loop()
        for hunt in msg.get("hunts", []):
            feed = self.hub.subscribe(conn, hunt, None)
            self.hub.hold(feed)  # until the client resumes it, so replay comes before live
            conn.restored.add(hunt)
            loop.call_later(RESTORED_HOLD_S, self._release_restored, conn)
        welcome = Welcome(cmd.id, player, msg["name"], token, now_ms())
        self.metrics.outcome("hello", "ok", time.perf_counter() - started)
        conn.send(codec.encode(welcome))

    def closed(self, conn: Connection) -> None:
        self.hub.drop(conn)
        conns = self.by_player.get(conn.player_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_player[conn.player_id]
                self.guard.forget_player(conn.player_id)

    # ---- replies ----------------------------------------------------------------

    def _reply(self, conn: Connection, cid: str, t: str, started: float, msg: WireReply) -> None:
        elapsed = time.perf_counter() - started
        if msg.get("t") == "ok":
            self.metrics.outcome(t, "ok", elapsed)
            result = {k: v for k, v in msg.items() if k != "t"}
            conn.send(codec.encode(Ok(cid, result)))
        else:
            self.metrics.outcome(t, msg["code"], elapsed)
            conn.send(codec.encode(Error(cid, msg["code"], msg["message"])))
