"""The WebSocket gateway: accepts clients, feeds frames to the sessions, drains on stop."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import uuid
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from actors.game.ids import EntityKind
from actors.messages import ShardReply, Unsubscribe
from actors.placement import shard_for
from protocol import codec
from protocol.errors import ErrorCode
from protocol.messages import Error
from server.actorsys import Runtime
from server.config import Settings
from server.gateway.acceptor import Acceptor, listen
from server.gateway.admission import LobbyConnection, Silent, lobby_connection, lobby_size
from server.gateway.bridge import Bridge
from server.gateway.connection import Connection, ConnState, Flusher, TokenBucket
from server.gateway.feeds import Hub
from server.gateway.guard import Guard
from server.gateway.metrics import Metrics
from server.gateway.session import Sessions

log = logging.getLogger("treasure.gateway")
LISTEN_BACKLOG = 4096  # the kernel's queue: a flood waits there (see server/gateway/acceptor.py)
CLOSE_WAIT_S = 3.0


def _address(ws: ServerConnection) -> str:
    addr = ws.remote_address
    return str(addr[0]) if addr else "?"


class Gateway:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.metrics = Metrics()
        self.flusher = Flusher()
        self.bridge = Bridge(
            runtime.asys,
            runtime.director,
            runtime.shards,
            f"gw-{uuid.uuid4().hex[:8]}",
            timeout_s=settings.request_timeout_s,
        )
        self.hub = Hub(self._fetch, self._subscribe_hunt, self._unsubscribe_hunt)
        self.guard = Guard(settings.limits())
        self.sessions = Sessions(
            self.bridge,
            self.hub,
            self.metrics,
            bad_frame_limit=settings.bad_frames_close_after,
            guard=self.guard,
        )
        self.connections: set[Connection] = set()
        self.silent = Silent(settings.handshake_timeout_s)
        self.draining = False
        self._server: Server | None = None
        self._acceptor: Acceptor | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.settings.tls_cert else "ws"
        return f"{scheme}://{self.settings.host}:{self.port}/"

    async def start(self) -> None:
        self.bridge.on_events = self._publish
        self.bridge.on_shards_changed = self._shards_changed
        loop = self._loop = asyncio.get_running_loop()
        self.bridge.start(loop)
        self.metrics.lobby.set_function(self.lobby)
        tls = self._tls()
        listening = listen(self.settings.host, self.settings.port, LISTEN_BACKLOG)
        self._server = await serve(
            self._handle,
            sock=listening,
            process_request=self._admit,
            create_connection=lobby_connection(self.silent),
            open_timeout=self.settings.handshake_timeout_s,
            max_size=self.settings.max_frame_bytes,
            compression=None,
            ssl=tls,
            backlog=LISTEN_BACKLOG,
        )
        # The server stays "serving" (websockets answers 503 otherwise), but its loop no
        # longer accepts: the Acceptor does, from a thread.
        loop.remove_reader(listening.fileno())
        # websockets' protocol factory, as asyncio's server would have used it
        factory = getattr(self._server.server, "_protocol_factory")  # noqa: B009
        s = self.settings
        self._acceptor = Acceptor(
            loop, listening, factory, tls, s.handshake_timeout_s, rate_per_s=s.accept_rate
        )
        self._acceptor.start()
        self.port = self._server.sockets[0].getsockname()[1]
        self.metrics.accepted.set_function(self.accepted)
        self.metrics.accept_queue.set_function(self.accept_queue)

    def lobby(self) -> int:
        """Connections not yet past ``hello``."""
        return lobby_size(self._loop) if self._loop else 0

    def accepted(self) -> int:
        """Connections accepted since the start."""
        return self._acceptor.accepted if self._acceptor else 0

    def accept_queue(self) -> int:
        """Connections waiting in the kernel's queue to be accepted."""
        return self._acceptor.waiting() if self._acceptor else 0

    def _tls(self) -> ssl.SSLContext | None:
        if self.settings.tls_cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        return ctx

    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        refused = self.guard.check(_address(ws))
        if refused is None:
            return None
        full = refused == "server full"
        status = HTTPStatus.SERVICE_UNAVAILABLE if full else HTTPStatus.TOO_MANY_REQUESTS
        return ws.respond(status, refused + "\n")

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        conn = Connection(
            ws, s.out_queue_frames, TokenBucket(s.rate_per_s, s.rate_burst), self.flusher
        )
        self.connections.add(conn)
        self.metrics.connections.inc()
        self.guard.admit(conn.remote)
        if isinstance(ws, LobbyConnection):
            ws.on_message = functools.partial(self._on_frame, conn)
        try:
            async for frame in ws:  # only text, fragmented, or early messages come here
                self._on_frame(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            conn.state = ConnState.CLOSED
            self.guard.release(conn.remote)
            self.sessions.closed(conn)
            self.connections.discard(conn)
            self.metrics.connections.dec()
            if conn.too_slow:
                self.metrics.slow_clients.inc()

    def _on_frame(self, conn: Connection, frame: bytes | str) -> None:
        if self.draining:
            self._refuse(conn, frame)
        else:
            self.sessions.on_frame(conn, frame)

    def _refuse(self, conn: Connection, frame: Any) -> None:
        try:
            _, cid = codec.read_envelope(codec.decode_frame(frame))
        except Exception:
            cid = None
        conn.send(codec.encode(Error(cid, ErrorCode.UNAVAILABLE, "server shutting down")))

    def _publish(self, events: list[tuple[str, int, bytes]]) -> None:
        self.hub.publish(events)

    def _fetch(self, conn: Connection, hunt: str, after: int) -> asyncio.Future[ShardReply]:
        return self.sessions.fetch(conn, hunt, after)

    def _subscribe_hunt(self, hunt: str) -> None:
        self.bridge.subscribe(hunt)

    def _unsubscribe_hunt(self, hunt: str) -> None:
        self.bridge.submit(EntityKind.HUNT, hunt, Unsubscribe())

    def _shards_changed(self, replaced: list[int]) -> None:
        def on_replaced(hunt: str) -> bool:
            return shard_for(EntityKind.HUNT, hunt, self.bridge.count) in replaced

        self.hub.forget([h for h in self.hub.lingering() if on_replaced(h)])
        for hunt in self.hub.hunts():
            if on_replaced(hunt):
                fut = self.bridge.subscribe(hunt)
                fut.add_done_callback(functools.partial(self._resubscribed, hunt))

    def _resubscribed(self, hunt: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        """The dead shard may have stored events it never published: catch feeds up."""
        if fut.cancelled() or fut.exception() is not None:
            return
        msg = fut.result()
        if msg.get("t") == "ok":
            self.hub.catch_up(hunt, msg["seq"])

    def kick(self, player: str, reason: str) -> int:
        conns = list(self.sessions.by_player.get(player, ()))
        for conn in conns:
            conn.close(4000, reason[:120])
        log.info("kicked player %s: %d connections closed (%s)", player, len(conns), reason)
        return len(conns)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish in-flight commands, close every client with 1001, stop the bridge."""
        self.draining = True
        try:
            await asyncio.wait_for(self.bridge.idle.wait(), grace_s)
        except TimeoutError:
            log.warning("%d commands still in flight at shutdown", self.bridge.in_flight())
        if self._acceptor is not None:
            await asyncio.to_thread(self._acceptor.stop)
        if self._server is not None:
            self._server.close(close_connections=True)
            self.silent.close_all()
            try:  # a handshake still in progress would otherwise hold us to its timeout
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_WAIT_S)
            except TimeoutError:
                log.warning("some connections had not closed after %.0fs", CLOSE_WAIT_S)
        await asyncio.to_thread(self.bridge.stop)
        log.info("gateway stopped; %d connections were open", len(self.connections))
