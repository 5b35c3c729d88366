"""Accepting connections on a thread of its own, at a pace, so a flood never stalls the loop.

Under a flood of connects, single ``accept()`` calls in the gateway's loop take
milliseconds: the kernel processes the packets that queued on the listener while it was
locked (the flood's handshakes) in the caller's ``accept()``, and no player's frame is read
meanwhile (docs/performance.md).

The ``Acceptor`` makes those calls on a thread, which holds no GIL during the system
call, and hands the sockets to the loop one per loop turn (as asyncio did with a
``backlog`` of 1), at most ``MAX_PENDING`` ahead and at most ``rate_per_s`` a second
(``Pacer``); the rest wait in the kernel's queue. The loop makes each connection with
``loop.connect_accepted_socket``, with the same factory and TLS context as the server it
was listening for.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("treasure.acceptor")

MAX_PENDING = 64  # accepted, not yet handed to the loop
BURST_S = 0.1  # with a rate: connections accepted at once, in seconds' worth of that rate
RETRY_AFTER_S = 1.0  # out of file descriptors, or a failure: as asyncio does (ACCEPT_RETRY_DELAY)
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# struct tcp_info: for a listening socket Linux reports its accept queue as tcpi_unacked
_TCP_INFO_BYTES, _TCPI_UNACKED = 104, 24


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket for ``host``:``port`` (0: any free port)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=backlog)


class Pacer:
    """``rate`` a second at most, after a burst of ``burst_s`` seconds' worth (0: no limit).

    A flood is admitted at a pace the players hardly feel, while a reconnect storm of
    10,000 players at the default 500/s still gets in within 20 s; the kernel's queue
    holds those waiting."""

    def __init__(self, rate: float, burst_s: float = BURST_S) -> None:
        self.rate, self.burst_s = rate, burst_s
        self._next_at = float("-inf")

    def take(self, now: float) -> float:
        """Takes the next turn: how long to wait for it (<= 0: go now)."""
        if self.rate <= 0:
            return 0.0
        turn = max(self._next_at, now - self.burst_s)
        self._next_at = turn + 1.0 / self.rate
        return turn - now


class Acceptor:
    """Accepts on the ``listening`` socket from a thread; the loop builds each connection
    with ``factory`` (and ``tls``, if any), one socket per loop turn."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listening: socket.socket,
        factory: Callable[[], asyncio.BaseProtocol],
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout_s: float | None = None,
        rate_per_s: float = 0.0,
    ) -> None:
        self.loop, self.listening, self.factory = loop, listening, factory
        self.pacer = Pacer(rate_per_s)
        self.tls, self.tls_timeout = tls, tls_handshake_timeout_s if tls else None
        self.pending: collections.deque[socket.socket] = collections.deque()
        self.room = threading.Semaphore(MAX_PENDING)
        self.accepted = 0
        self.retry_after_s = RETRY_AFTER_S
        self._stop_r, self._stop_w = os.pipe()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="acceptor", daemon=True)
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self.listening.setblocking(False)
        self._thread.start()

    def waiting(self) -> int:
        """Connections waiting in the kernel's queue to be accepted (one system call)."""
        info = self.listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
        return int(struct.unpack_from("I", info, _TCPI_UNACKED)[0])

    def stop(self) -> None:
        """Stop accepting (the listening socket stays open for its owner to close) and
        close the sockets accepted but not yet handed over."""
        self._stopping.set()
        os.write(self._stop_w, b"x")
        self.room.release()  # in case the thread waits for room
        self._thread.join()
        os.close(self._stop_r)
        os.close(self._stop_w)
        while self.pending:
            self.pending.popleft().close()

    # -- the thread

    def _run(self) -> None:
        listening = self.listening.fileno()
        poller = select.poll()
        poller.register(listening, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while not self._stopping.is_set():
            try:
                if listening in {fd for fd, _ in poller.poll()}:
                    self._accept_all()
            except Exception:  # a bug here must not end accepting for good
                log.exception("the acceptor failed; accepting again in %gs", self.retry_after_s)
                self._stopping.wait(self.retry_after_s)

    def _accept_all(self) -> None:
        while True:
            self.room.acquire()
            if self._stopping.is_set() or not self._pace():
                return
            try:
                conn, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                self.room.release()
                return
            except OSError as exc:
                self.room.release()
                if exc.errno in _OUT_OF_FDS:
                    log.error("cannot accept: %s; retrying in %gs", exc, self.retry_after_s)
                    self._stopping.wait(self.retry_after_s)
                    return
                continue  # the client gave up before we accepted it (ECONNABORTED...)
            except BaseException:
                self.room.release()
                raise
            self.pending.append(conn)
            self.accepted += 1
            if len(self.pending) == 1:
                try:
                    self.loop.call_soon_threadsafe(self._hand_over)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return

    def _pace(self) -> bool:
        """Waits for the next accept's turn; False if stopped meanwhile."""
        wait = self.pacer.take(time.monotonic())
        return wait <= 0 or not self._stopping.wait(wait)

    # -- the loop

    def _hand_over(self) -> None:
        """One socket per loop turn: the players' frames interleave with a flood."""
        if not self.pending:
            return
        conn = self.pending.popleft()
        self.room.release()
        task = self.loop.create_task(
            self.loop.connect_accepted_socket(
                self.factory, conn, ssl=self.tls, ssl_handshake_timeout=self.tls_timeout
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._made)
        if self.pending:
            self.loop.call_soon(self._hand_over)

    def _made(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # e.g. a TLS handshake that failed or timed out: that client's problem only
            log.debug("connection not made: %r", exc)
