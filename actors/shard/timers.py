"""The hunts that are running against a clock, so a (re)started shard can honour them.

One shared stream, ``timers``: ``timer_set`` when a timed hunt starts and
``timer_cleared`` when it finishes, appended by whichever shard hosts the hunt
(optimistically, retrying on a concurrent append). On start a shard reads it
and activates the hunts it hosts: those whose time is up finish at once, the
others stay active until their timer fires. A record lost to a crash between
the hunt's commit and this append only delays the finish to the hunt's next
activation; the hunt's own stream stays the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from persistence.base import EventStore, NewEvent
from persistence.errors import ConcurrencyError, StoreError

log = logging.getLogger("treasure.timers")
STREAM = "timers"
RETRIES = 5


def running_timers(store: EventStore) -> dict[str, int]:
    """hunt id -> ends_at of every timed hunt not yet finished."""
    timers: dict[str, int] = {}
    for stored in store.read(STREAM):
        if stored.type == "timer_set":
            timers[stored.data["hunt_id"]] = stored.data["ends_at"]
        else:
            timers.pop(stored.data["hunt_id"], None)
    return timers


class TimerLog:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.version: int | None = None

    def record(self, changes: Iterable[tuple[str, int | None]], now: int) -> None:
        """``(hunt, ends_at)`` sets a timer, ``(hunt, None)`` clears it."""
        events = [
            NewEvent("timer_set", 1, {"hunt_id": h, "ends_at": e}, now)
            if e is not None
            else NewEvent("timer_cleared", 1, {"hunt_id": h}, now)
            for h, e in changes
        ]
        if not events:
            return
        for _ in range(RETRIES):
            try:
                if self.version is None:
                    self.version = sum(1 for _ in self.store.read(STREAM))
                self.version = self.store.append(STREAM, self.version, events)
                return
            except ConcurrencyError:
                self.version = None
            except StoreError as exc:
                self.version = None
                log.warning("could not record timers %s: %s", events, exc)
                return
        log.warning("gave up recording timers after %d concurrent appends", RETRIES)
