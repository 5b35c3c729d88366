"""The gateway-shard data channel: framing, the token, and the bridge's resend on a new stream.

A real ``ChannelServer`` on 127.0.0.1 driven by a thread (as a shard's actor
loop drives it) and the gateway's real ``Bridge`` on the test's event loop;
only Thespian is left out (the crash tests cover a real shard's channel).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import queue
import select
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.game.player import Authenticate, Register
from actors.messages import CommandBatch, ReplyBatch, Request, Subscribe, Unsubscribe
from actors.runtime.channel import (
    HEADER,
    MAX_FRAME,
    ChannelError,
    ChannelServer,
    FrameReader,
    frame,
    hello,
    raw_frame,
)
from protocol import messages as wire
from protocol.messages import CommandId, HuntId
from server.gateway import bridge as server_bridge
from server.gateway.bridge import TIMED_OUT, Bridge

TRIPPED: list[str] = []


def _tripwire(what: str) -> None:
    TRIPPED.append(what)


class Trap:
    """Unpickling this calls ``_tripwire``: proof that a pickle was read."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_tripwire, ("unpickled",))


class FakeShard:
    """A ChannelServer served by its own thread; answers each request unless holding."""

    def __init__(self) -> None:
        self.server = ChannelServer("127.0.0.1")
        self.received: list[int] = []
        self.batches: list[list[int]] = []
        self.holding = False
        self.unanswered: list[tuple[str, Request]] = []
        self.got = threading.Condition()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fake-shard")
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Runs ``fn`` on the shard's thread (the server is not thread-safe)."""
        done: Future[Any] = Future()
        self._calls.put((fn, done))
        return done.result(10)

    def wait_received(self, count: int) -> None:
        with self.got:
            assert self.got.wait_for(lambda: len(self.received) >= count, 10), self.received

    def drop_streams(self) -> None:
        def drop() -> None:
            for fd in self.server.filenos()[1:]:  # as if the network dropped them
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)

        self.call(drop)

    def stop(self) -> None:
        self._stop = True
        self._thread.join(10)
        self.server.close()

    def _run(self) -> None:
        while not self._stop:
            while not self._calls.empty():
                fn, done = self._calls.get()
                done.set_result(fn())
            ready, _, _ = select.select(self.server.filenos(), [], [], 0.05)
            for gateway, batch in self.server.ready(ready):
                assert isinstance(batch, CommandBatch)
                with self.got:
                    self.received += [r.req for r in batch.requests]
                    self.batches.append([r.req for r in batch.requests])
                    self.got.notify_all()
                if self.holding:
                    self.unanswered += [(gateway, r) for r in batch.requests]
                else:
                    self._answer(gateway, batch.requests)

    def answer_held(self) -> None:
        """Answers what came while holding (from the shard's thread: ``call`` it)."""
        held, self.unanswered = self.unanswered, []
        for gateway, req in held:
            self._answer(gateway, [req])

    def _answer(self, gateway: str, requests: list[Request]) -> None:
        replies = [(r.req, {"t": "ok", "entity": r.entity}) for r in requests]
        self.server.send(gateway, ReplyBatch(replies))


@pytest.fixture
def shard() -> Iterator[FakeShard]:
    s = FakeShard()
    yield s
    s.stop()


@pytest.fixture
async def bridge(shard: FakeShard) -> AsyncIterator[Bridge]:
    b = Bridge(None, None, [None], "gw-test")
    b.loop, b._running = asyncio.get_running_loop(), True
    b.channels = [shard.server.endpoint]
    b._connect(0)
    yield b
    b._running = False
    b._close_links()
    await asyncio.sleep(0)  # one turn: the transports' connection_lost


# ---- framing ----------------------------------------------------------------------------


@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
)
def test_frames_come_out_whole_however_the_stream_is_split(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(raw_frame(p) for p in payloads)
    reader, out, pos, i = FrameReader(), [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += reader.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    assert out == payloads


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(ChannelError):
        FrameReader().feed(HEADER.pack(MAX_FRAME + 1) + b"x")


# ---- the token ----------------------------------------------------------------------------


REQ = Request(7, "hunt", "h7", None)


def _refused(shard: FakeShard, first: bytes) -> bytes:
    """Sends ``first`` then a trap pickle; returns what the shard sends back before closing."""
    ep = shard.server.endpoint
    with socket.create_connection((ep.host, ep.port), timeout=10) as sock:
        sock.sendall(first + frame(Trap()))
        return sock.recv(100)


def test_a_stream_with_a_wrong_token_is_closed_and_none_of_its_pickles_read(
    shard: FakeShard,
) -> None:
    TRIPPED.clear()
    assert _refused(shard, hello("0" * 32, "intruder")) == b""
    assert _refused(shard, frame(Trap())) == b""  # a pickle first, no token at all
    assert TRIPPED == []
    assert shard.call(lambda: shard.server.filenos()[1:]) == []


def test_the_token_lets_a_stream_in(shard: FakeShard) -> None:
    ep = shard.server.endpoint
    with socket.create_connection((ep.host, ep.port), timeout=10) as sock:
        sock.sendall(hello(ep.token, "gw-raw") + frame(CommandBatch([REQ])))
        reader, got = FrameReader(), []
        while not got:
            got = reader.feed(sock.recv(65536))
    assert pickle.loads(got[0]) == ReplyBatch([(7, {"t": "ok", "entity": "h7"})])


# ---- the bridge -----------------------------------------------------------------------------


async def test_requests_are_answered_in_the_order_submitted(bridge: Bridge) -> None:
    """Submitted at once, before the channel is even up: written when it is."""
    futs = [bridge.submit("hunt", f"h{i}", None) for i in range(200)]
    replies = await asyncio.wait_for(asyncio.gather(*futs), 10)
    assert [r["entity"] for r in replies] == [f"h{i}" for i in range(200)]
    assert bridge.in_flight() == 0 and bridge.linked() == [0]


async def test_a_lost_stream_is_reopened_and_what_was_pending_resent(
    bridge: Bridge, shard: FakeShard
) -> None:
    await asyncio.wait_for(bridge.submit("hunt", "warm", None), 10)
    resubscribed: list[list[int]] = []
    bridge.on_shards_changed = resubscribed.append
    shard.holding = True
    futs = [bridge.submit("hunt", f"h{i}", None) for i in range(5)]
    await asyncio.to_thread(shard.wait_received, 6)
    assert not any(f.done() for f in futs)
    shard.holding = False
    await asyncio.to_thread(shard.drop_streams)
    replies = await asyncio.wait_for(asyncio.gather(*futs), 10)
    assert [r["entity"] for r in replies] == [f"h{i}" for i in range(5)]
    first = shard.received[1:6]
    assert shard.received[6:] == first  # the same ids again, in the same order
    assert resubscribed == [[0]]  # the gateway resubscribes the shard's hunts


async def test_requests_wait_for_the_reply_to_the_batch_before_and_go_as_one(
    bridge: Bridge, shard: FakeShard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is unanswered the shard is busy with it: what comes meanwhile is
    written in one batch when its reply batch arrives (fewer, fuller batches)."""
    await asyncio.wait_for(bridge.submit("hunt", "warm", None), 10)
    monkeypatch.setattr(server_bridge, "HOLD_MAX_S", 60.0)
    shard.holding = True
    first = bridge.submit("hunt", "a", None)
    await asyncio.to_thread(shard.wait_received, 2)
    later = []
    for name in ("b", "c", "d"):  # three loop turns, three flushes of the bridge
        later.append(bridge.submit("hunt", name, None))
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [r.entity for r in bridge._links[0].held] == ["b", "c", "d"]
    shard.holding = False
    await asyncio.to_thread(shard.call, shard.answer_held)
    replies = await asyncio.wait_for(asyncio.gather(first, *later), 10)
    assert [r["entity"] for r in replies] == ["a", "b", "c", "d"]
    assert [len(b) for b in shard.batches] == [1, 1, 3]
    assert bridge.batches_sent == 3


async def test_held_requests_go_after_a_while_without_a_reply(
    bridge: Bridge, shard: FakeShard
) -> None:
    """A shard that does not answer a batch still gets the next (a reply batch it sent
    another way, or a shard slowed down, must not hold the gateway's commands back)."""
    await asyncio.wait_for(bridge.submit("hunt", "warm", None), 10)
    shard.holding = True
    first = bridge.submit("hunt", "a", None)
    await asyncio.to_thread(shard.wait_received, 2)
    second = bridge.submit("hunt", "b", None)
    await asyncio.to_thread(shard.wait_received, 3)  # no reply came: written after HOLD_MAX_S
    shard.holding = False
    await asyncio.to_thread(shard.call, shard.answer_held)
    replies = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert [r["entity"] for r in replies] == ["a", "b"]
    assert [len(b) for b in shard.batches] == [1, 1, 1]


class Replies:
    """What ``Bridge.send``'s callbacks got, by name, and an event when ``count`` have."""

    def __init__(self, count: int) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.count, self.all = count, asyncio.Event()

    def then(self, name: str) -> Callable[[dict[str, Any]], None]:
        def record(msg: dict[str, Any]) -> None:
            self.got.append((name, msg))
            if len(self.got) >= self.count:
                self.all.set()

        return record


async def test_a_request_past_its_deadline_is_answered_timed_out_once_and_not_resent(
    bridge: Bridge, shard: FakeShard
) -> None:
    await asyncio.wait_for(bridge.submit("hunt", "warm", None), 10)
    shard.holding = True
    replies = Replies(2)
    bridge.deadlines.delay_s = 0.05
    bridge.send("hunt", "a", None, replies.then("a"))
    bridge.send("hunt", "b", None, replies.then("b"))
    bridge.deadlines.delay_s = 10
    await asyncio.wait_for(replies.all.wait(), 10)
    assert replies.got == [("a", TIMED_OUT), ("b", TIMED_OUT)]
    assert bridge.in_flight() == 0
    shard.holding = False
    await asyncio.to_thread(shard.drop_streams)  # a new stream resends what is pending
    late = Replies(1)
    bridge.send("hunt", "c", None, late.then("c"))
    await asyncio.wait_for(late.all.wait(), 10)
    assert late.got == [("c", {"t": "ok", "entity": "c"})]
    assert replies.got == [("a", TIMED_OUT), ("b", TIMED_OUT)]  # nothing more for a or b
    assert shard.received[3:] == [shard.received[-1]]  # only c's id after a's and b's


async def test_a_failing_reply_handler_loses_none_of_the_others(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(msg: dict[str, Any]) -> None:
        raise RuntimeError("a bug in one session")

    replies = Replies(2)
    bridge.send("hunt", "x", None, replies.then("x"))
    bridge.send("hunt", "y", None, broken)
    bridge.send("hunt", "z", None, replies.then("z"))
    await asyncio.wait_for(replies.all.wait(), 10)
    assert [name for name, _ in replies.got] == ["x", "z"]
    assert "handling a reply failed" in caplog.text
    assert bridge.in_flight() == 0


def test_the_backlog_counts_what_the_shard_has_not_read() -> None:
    server = ChannelServer("127.0.0.1")
    try:
        ep = server.endpoint
        with socket.create_connection((ep.host, ep.port), timeout=10) as sock:
            select.select(server.filenos(), [], [], 10)
            assert server.ready(server.filenos()) == []  # the listener: accepts the stream
            assert server.backlog() == 0
            data = hello(ep.token, "gw-b") + frame(CommandBatch([REQ]))
            sock.sendall(data)  # on loopback, in the shard's receive queue when this returns
            assert server.backlog() == len(data)
            assert server.ready(server.filenos()[1:]) == [("gw-b", CommandBatch([REQ]))]
            assert server.backlog() == 0
    finally:
        server.close()


def _gateway_stream(server: ChannelServer, name: str, rcvbuf: int | None = None) -> socket.socket:
    """A raw gateway stream past its hello, accepted and greeted by ``server``."""
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting: the window stays this small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((server.endpoint.host, server.endpoint.port))
    sock.sendall(hello(server.endpoint.token, name))
    while not server.connected(name):
        ready, _, _ = select.select(server.filenos(), [], [], 10)
        assert ready, f"{name} never got in"
        server.ready(ready)
    return sock


def test_a_gateway_that_stops_reading_holds_up_only_itself() -> None:
    """Its frames queue in the shard (bounded): the shard goes on serving the others."""
    server = ChannelServer("127.0.0.1", max_queued=8 * 1024 * 1024)
    stuck = _gateway_stream(server, "gw-stuck", rcvbuf=4096)
    other = _gateway_stream(server, "gw-other")
    big = ReplyBatch([(1, {"blob": b"x" * 256 * 1024})])
    try:
        # 6 MiB: more than the kernel buffers between them hold (4 MiB at most here),
        # so a shard writing itself would now wait for a reader that never comes.
        assert all(server.send("gw-stuck", big) for _ in range(24))
        assert server.send("gw-other", ReplyBatch([(2, {"t": "ok"})]))
        reader, got = FrameReader(), []
        while not got:
            got = reader.feed(other.recv(65536))
        assert pickle.loads(got[0]) == ReplyBatch([(2, {"t": "ok"})])
        assert server.connected("gw-stuck")
        # Past the bound the stuck stream is dropped (its gateway would reconnect).
        sent = [server.send("gw-stuck", big) for _ in range(48)]
        assert not all(sent) and not server.connected("gw-stuck")
        assert server.connected("gw-other")
    finally:
        server.close()
        stuck.close()
        other.close()


def test_frames_keep_their_order_when_the_kernel_takes_only_some() -> None:
    """Frames go out at once while the kernel takes them and through the writer when it
    does not; a small frame after a big one that waits never overtakes it."""
    server = ChannelServer("127.0.0.1")
    slow = _gateway_stream(server, "gw-slow", rcvbuf=4096)
    try:
        for i in range(40):  # 10 MiB: more than the kernel holds (4 MiB at most here)
            blob = b"x" * (512 * 1024 + i if i % 2 == 0 else 10)
            assert server.send("gw-slow", ReplyBatch([(i, {"blob": blob})]))
        assert server._by_gateway["gw-slow"].queued > 0  # the rest waits for the writer
        reader, got = FrameReader(), []
        while len(got) < 4:  # room in the kernel again, while the writer still has frames
            got += reader.feed(slow.recv(1 << 20))
        assert server.send("gw-slow", ReplyBatch([(40, {})]))
        while len(got) < 41:
            got += reader.feed(slow.recv(1 << 20))
        assert [pickle.loads(f).replies[0][0] for f in got] == list(range(41))
        assert server.send("gw-slow", ReplyBatch([(41, {})]))  # and after the writer caught up
        while len(got) < 42:
            got += reader.feed(slow.recv(1 << 20))
        assert pickle.loads(got[41]).replies[0][0] == 41
    finally:
        server.close()
        slow.close()


def test_what_the_channels_carry_pickles_back_to_equal_values() -> None:
    """The messages pickled by their fields (``pickle_by_fields``) come back whole."""
    clues = (wire.AnswerClue("t", 3, "a"), wire.LocationClue("u", 5, 48.1, 11.5, 30.0))
    commands = [
        wire.CreateHunt(CommandId("c1"), "hunt", clues, 600, 10),
        wire.JoinHunt(CommandId("c2"), HuntId("h")),
        wire.LeaveHunt(CommandId("c3"), HuntId("h")),
        wire.StartHunt(CommandId("c4"), HuntId("h")),
        wire.EndHunt(CommandId("c5"), HuntId("h")),
        wire.SubmitAnswer(CommandId("c6"), HuntId("h"), 0, "answer"),
        wire.CheckIn(CommandId("c7"), HuntId("h"), 1, 48.1, 11.5),
        wire.GetHunt(CommandId("c8"), HuntId("h")),
        wire.Resume(CommandId("c9"), HuntId("h"), 4),
        Subscribe(),
        Unsubscribe(),
        Register("name", "hash"),
        Authenticate("hash"),
        None,
    ]
    batch = CommandBatch([Request(i, "hunt", "h", c, "p", "n") for i, c in enumerate(commands)])
    back = pickle.loads(frame(batch)[4:])
    assert back == batch
    assert [type(r.cmd) for r in back.requests] == [type(c) for c in commands]
    replies = ReplyBatch([(1, {"t": "ok", "seq": 2})], [("h", 2, b"frame")])
    assert pickle.loads(frame(replies)[4:]) == replies


async def test_a_failing_event_sink_loses_no_reply_and_keeps_the_stream(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(events: list[tuple[str, int, bytes]]) -> None:
        raise RuntimeError("a bug in the hub")

    bridge.on_events = broken
    first = Replies(1)
    bridge.send("hunt", "a", None, first.then("a"))
    await asyncio.wait_for(first.all.wait(), 10)
    bridge._on_batch(ReplyBatch([], [("a", 1, b"event")]))  # as if the shard pushed one
    assert "delivering 1 events failed" in caplog.text
    later = Replies(1)
    bridge.send("hunt", "b", None, later.then("b"))
    await asyncio.wait_for(later.all.wait(), 10)
    assert later.got == [("b", {"t": "ok", "entity": "b"})] and bridge.linked() == [0]
