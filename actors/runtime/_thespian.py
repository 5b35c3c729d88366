"""Fixes for Thespian 4.0.1, applied on import.

1. Each pass of Thespian's TCP transport loop builds a new ``DefaultSelector``
   (epoll on Linux: epoll_create, one epoll_ctl per socket, epoll_wait, close)
   for a handful of sockets, and every actor pays it per message (a visible share
   of the gateway's CPU: docs/performance.md). A ``PollSelector`` does the same
   job with one ``poll`` call and no file descriptor of its own.

2. Supervision (below).

When an actor handles one child's ``ChildActorExited``, Thespian's
``_childExited`` reaps every child it finds dead at that moment and forgets
it without a ``ChildActorExited`` of its own. Two shards dying within a few
milliseconds of each other (a second SIGCHLD arriving after the first
liveness check) therefore left the Director with one shard never recreated,
and the system's shutdown then waited forever for that child. Here the other
dead children are reported as Thespian's SIGCHLD handler would report them.
"""

from __future__ import annotations

import logging
import selectors
import types
from typing import Any

from thespian.actors import ChildActorExited
from thespian.system.addressManager import CannotPickleAddress
from thespian.system.multiprocCommon import MultiProcManager, MultiProcReplicator
from thespian.system.transport import TCPTransport as _tcp
from thespian.system.transport import TransmitIntent
from thespian.system.utilis import partition

log = logging.getLogger("treasure.actors")


_tcp.selectors = types.SimpleNamespace(
    DefaultSelector=getattr(selectors, "PollSelector", selectors.DefaultSelector),
    EVENT_READ=selectors.EVENT_READ,
    EVENT_WRITE=selectors.EVENT_WRITE,
)


def _child_exited(self: Any, child_addr: Any) -> None:
    children = getattr(self, "_child_procs", [])
    self._child_procs, dead = partition(MultiProcReplicator._checkChildLiveness, children)
    for info in dead:
        addr = getattr(info, "childRealAddr", info.childAddr)
        if addr == child_addr:
            continue
        try:
            intent = TransmitIntent(self.transport.myAddress, ChildActorExited(addr))
            self.transport.scheduleTransmit(None, intent)
        except CannotPickleAddress:
            log.error("child %s is dead but its address cannot be reported", addr)


MultiProcManager._childExited = _child_exited
