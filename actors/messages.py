"""Messages between the gateway, the Director and the ShardHosts (pickled by Thespian).

One type per meaning:

- data channel (gateway <-> shard): ``CommandBatch`` of ``Request``s in, ``ReplyBatch``
  out, whose replies are ``WireReply`` dicts (the protocol's reply without its id) or a
  ``Resumed`` (a resume's seq and the event frames the client missed);
- supervision: ``ShardSettings`` (Director -> ShardHost), ``ShardStarted`` (back),
  ``RegisterGateway``, ``ShardDirectory``, ``ShardsChanged``, ``Stopping`` and
  ``StoppingAcknowledged``;
- admin: ``Inspect`` (read-only questions) and ``AdminAction`` (passivate, snapshot,
  end a hunt), both answered by an ``AdminReply``.

Every hop is batched: a gateway sends one ``CommandBatch`` per shard per
event-loop turn; a shard answers each gateway with one ``ReplyBatch`` per
flush, carrying the replies and then the events.
"""

from __future__ import annotations

import copyreg
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from actors.game.ids import EntityKind
from actors.game.player import Authenticate, Register
from persistence.factory import StoreConfig
from protocol import messages as wire


@dataclass(slots=True)
class Request:
    req: int
    kind: EntityKind
    entity: str
    cmd: Any
    player: str = ""
    name: str = ""

    def __repr__(self) -> str:
        # Never the command's fields: they hold answers and coordinates.
        return f"Request({self.req}, {self.kind}-{self.entity}, {type(self.cmd).__name__})"


@dataclass(slots=True)
class CommandBatch:
    """Requests on a gateway's data channel (the shard knows the gateway by its stream)."""

    requests: list[Request]

    def __repr__(self) -> str:
        return f"CommandBatch({len(self.requests)} requests)"


WireReply = dict[str, Any]
"""A reply as its client will see it, less the command id: ``t`` and the protocol's fields."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """The answer to a ``resume``: the hunt's seq, and the frames of the events after the
    client's seq, which the gateway delivers right after the ``ok``."""

    seq: int
    frames: list[bytes]


ShardReply = WireReply | Resumed


def as_wire(reply: ShardReply) -> WireReply:
    """The reply as its client sees it (a resume's frames are delivered apart)."""
    return {"t": "ok", "seq": reply.seq} if isinstance(reply, Resumed) else reply


@dataclass(slots=True)
class ReplyBatch:
    replies: list[tuple[int, ShardReply]]
    events: list[tuple[str, int, bytes]] = field(default_factory=list)  # after the replies

    def __repr__(self) -> str:
        return f"ReplyBatch({len(self.replies)} replies, {len(self.events)} events)"


@dataclass(frozen=True, slots=True)
class Subscribe:
    """The gateway wants the hunt's events; the reply carries the hunt's seq."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    pass


@dataclass(slots=True)
class ShardSettings:
    index: int
    count: int
    store: StoreConfig
    snapshot_every: int = 100
    passivate_after_s: float = 300.0
    tick_s: float = 0.25


@dataclass(frozen=True, slots=True)
class ShardStarted:
    """A ShardHost to its Director: it serves shard ``index`` from process ``pid``, and its
    data channel listens at ``channel``."""

    index: int
    pid: int
    channel: Any  # Endpoint


@dataclass(slots=True)
class ShardDirectory:
    """The current address of every shard (and of its data channel), sent by the Director."""

    shards: list[Any]
    channels: list[Any] = field(default_factory=list)  # Endpoint, or None if not started yet


@dataclass(slots=True)
class RegisterGateway:
    gateway: str
    address: Any


@dataclass(slots=True)
class ShardsChanged:
    """Told to gateways when a shard was (re)created: its new address and channel (the
    gateway opens it and resends there what was in flight)."""

    shards: list[Any]
    channels: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class Inspect:
    """A read-only admin question answered by the Director or a shard."""

    what: str
    args: dict[str, Any] = field(default_factory=dict)
    ref: int = 0  # echoed in the reply, so a late answer is never taken for a newer one


Action = Literal["passivate", "snapshot", "end_hunt"]


@dataclass(slots=True)
class AdminAction:
    """An admin's change to one entity of a shard."""

    action: Action
    kind: EntityKind
    entity: str
    ref: int = 0


@dataclass(slots=True)
class AdminReply:
    """The answer to an ``Inspect`` or an ``AdminAction`` (``ref`` echoed)."""

    ok: bool
    data: Any
    error: str = ""
    ref: int = 0


@dataclass(frozen=True, slots=True)
class Stopping:
    """The server is shutting down: the Director stops recreating shards."""


@dataclass(frozen=True, slots=True)
class StoppingAcknowledged:
    """The Director's answer to ``Stopping``: no shard is recreated from now on."""


def pickle_by_fields(cls: type[Any]) -> None:
    """Pickles instances of the dataclass ``cls`` as a call of ``cls`` with its field values.

    A slotted dataclass pickles through ``dataclasses``' ``__getstate__`` and
    ``__setstate__``, which walk ``fields()`` and set each slot with
    ``object.__setattr__``: a large share of the data channels' pickling, per
    command each way. None of these classes has an ``__init__`` that does more
    than set its fields.
    """
    names = [f.name for f in fields(cls)]
    get: Callable[[Any], tuple[Any, ...]]
    if len(names) > 1:
        get = operator.attrgetter(*names)
    elif names:
        one = operator.attrgetter(names[0])
        get = lambda obj: (one(obj),)  # noqa: E731
    else:
        get = lambda obj: ()  # noqa: E731
    copyreg.pickle(cls, lambda obj: (cls, get(obj)))


for _cls in (
    Request,
    CommandBatch,
    ReplyBatch,
    Resumed,
    Subscribe,
    Unsubscribe,
    Register,
    Authenticate,
    wire.AnswerClue,
    wire.LocationClue,
    wire.CreateHunt,
    wire.JoinHunt,
    wire.LeaveHunt,
    wire.StartHunt,
    wire.EndHunt,
    wire.SubmitAnswer,
    wire.CheckIn,
    wire.GetHunt,
    wire.Resume,
):
    pickle_by_fields(_cls)
