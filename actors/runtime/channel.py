"""The data channel between a gateway and a shard: one TCP stream per pair.

Thespian's TCP transport waits for an acknowledgement of every message and
runs its whole transport loop for each ``tell``: on the gateway that was
the largest share of its CPU (two bridge threads, each handing the GIL back
and forth with the event loop), and a shard paid for it twice per batch
(receive and reply). Commands and their replies are the bulk of the traffic and need none
of that: a TCP stream already delivers in order, and a shard that dies is
noticed by the stream closing (the Director still recreates it through
Thespian, which stays the path of every control message).

The shard listens on the Thespian base address (127.0.0.1 by default) and
watches its sockets with ``ThespianWatch``, so it still handles one message
at a time in its actor loop. A frame is a 4-byte big-endian length and a
pickle, like Thespian's own messages; the first frame of a connection must
carry the shard's random token, so a local process that does not know it
gets nothing unpickled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import logging
import pickle
import queue
import secrets
import select
import socket
import struct
import termios
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("treasure.channel")
HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
SEND_TIMEOUT_S = 10.0
MAX_QUEUED = 64 * 1024 * 1024  # bytes waiting for one gateway before its stream is dropped
RECV_BYTES = 256 * 1024


class ChannelError(Exception):
    """The peer broke the framing or did not know the token."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a shard's channel listens, and the token its first frame must carry."""

    host: str
    port: int
    token: str


def frame(obj: object) -> bytes:
    return raw_frame(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def raw_frame(data: bytes) -> bytes:
    return HEADER.pack(len(data)) + data


def hello(token: str, gateway: str) -> bytes:
    """The first frame of a gateway's stream: not a pickle, so it is checked before any is read."""
    return raw_frame(f"{token}\n{gateway}".encode())


class FrameReader:
    """Splits a byte stream into the payloads of its frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        start = 0
        while len(buf) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, start)
            if size > MAX_FRAME:
                raise ChannelError(f"a frame of {size} bytes")
            end = start + HEADER.size + size
            if len(buf) < end:
                break
            out.append(bytes(buf[start + HEADER.size : end]))
            start = end
        del buf[:start]
        return out


class _Peer:
    """One gateway's stream. A frame is written at once when the kernel takes it;
    what it does not take goes to a thread of the peer's own, so a gateway that
    stops reading holds up nobody but itself. (Every frame through the thread
    would cost a thread switch and a turn at the GIL, which the writer waits
    for while the shard computes.)
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.gateway: str | None = None
        self.queued = 0  # bytes handed to the writer and not yet written
        self._count = threading.Lock()  # queued changes in both threads
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    def write(self, data: bytes) -> None:
        with self._count:
            if self.queued == 0:  # nothing waits for the writer: this frame may overtake none
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:  # the reader sees the stream end and drops the peer
                    return
                if sent == len(data):
                    return
                data = data[sent:]
            self.queued += len(data)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_all, name="channel-writer")
            self._writer.daemon = True
            self._writer.start()
        self._out.put(data)

    def _write_all(self) -> None:
        while (data := self._out.get()) is not None:
            try:
                self._send_all(data)
            except OSError:  # the reader sees the stream end and drops the peer
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                return
            finally:
                with self._count:
                    self.queued -= len(data)

    def _send_all(self, data: bytes) -> None:
        """Writes all of ``data`` to the non-blocking socket, waiting at most
        ``SEND_TIMEOUT_S`` at a time for the gateway to read."""
        view = memoryview(data)
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT)
        while view:
            if not poller.poll(SEND_TIMEOUT_S * 1000):
                raise TimeoutError(f"the gateway read nothing for {SEND_TIMEOUT_S:g} s")
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                continue

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # a writer waiting to send returns
        if self._writer is not None:
            self._out.put(None)
            self._writer.join(SEND_TIMEOUT_S)
        self.sock.close()


class ChannelServer:
    """The shard's end: accepts gateways' streams, reads their frames, writes replies.

    Not thread-safe; the shard's actor loop calls it between messages.
    """

    def __init__(self, host: str, max_queued: int = MAX_QUEUED) -> None:
        self.token = secrets.token_hex(16)
        self.max_queued = max_queued
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.endpoint = Endpoint(host, self._listener.getsockname()[1], self.token)
        self._peers: dict[int, _Peer] = {}
        self._by_gateway: dict[str, _Peer] = {}

    def filenos(self) -> list[int]:
        return [self._listener.fileno(), *self._peers]

    def backlog(self) -> int:
        """Bytes the gateways wrote that the shard has not read yet: its queue of commands."""
        waiting = 0
        for fd in self._peers:
            with contextlib.suppress(OSError):
                waiting += struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        return waiting

    def connected(self, gateway: str) -> bool:
        return gateway in self._by_gateway

    def ready(self, fds: list[int]) -> list[tuple[str, Any]]:
        """Reads the ready sockets: (gateway, message) for each frame past the hello."""
        out: list[tuple[str, Any]] = []
        for fd in fds:
            if fd == self._listener.fileno():
                self._accept()
                continue
            peer = self._peers.get(fd)
            if peer is None:
                continue
            try:
                try:
                    data = peer.sock.recv(RECV_BYTES)
                except BlockingIOError:
                    continue  # not readable after all
                if not data:
                    raise ConnectionError("closed by the gateway")
                for payload in peer.reader.feed(data):
                    if peer.gateway is None:
                        self._greet(peer, payload)
                    else:
                        out.append((peer.gateway, pickle.loads(payload)))
            except (OSError, ChannelError, pickle.UnpicklingError) as exc:
                self._drop(peer, exc)
        return out

    def send(self, gateway: str, msg: object) -> bool:
        """Queues one frame for the gateway's stream; False when it has none, or when
        over ``max_queued`` bytes wait for it (the stream is dropped: the gateway
        reconnects and resends what it has no reply for)."""
        peer = self._by_gateway.get(gateway)
        if peer is None:
            return False
        data = frame(msg)
        if peer.queued + len(data) > self.max_queued:
            self._drop(peer, ChannelError(f"over {self.max_queued} bytes wait to be read"))
            return False
        peer.write(data)
        return True

    def close(self) -> None:
        for peer in list(self._peers.values()):
            peer.close()
        self._peers.clear()
        self._by_gateway.clear()
        self._listener.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)  # recv only when ready; send what the kernel takes
        self._peers[sock.fileno()] = _Peer(sock)

    def _greet(self, peer: _Peer, payload: bytes) -> None:
        token, _, gateway = payload.partition(b"\n")
        if not gateway or not hmac.compare_digest(token, self.token.encode()):
            raise ChannelError("the first frame did not carry the token")
        name = gateway.decode(errors="replace")
        old = self._by_gateway.get(name)
        if old is not None:
            self._drop(old, ChannelError("replaced by a new stream"))
        peer.gateway = name
        self._by_gateway[name] = peer

    def _drop(self, peer: _Peer, why: BaseException) -> None:
        if peer.gateway is not None or not isinstance(why, ConnectionError):
            log.warning("dropping the channel of gateway %s: %s", peer.gateway, why)
        self._peers.pop(peer.sock.fileno(), None)
        if peer.gateway is not None and self._by_gateway.get(peer.gateway) is peer:
            del self._by_gateway[peer.gateway]
        peer.close()
