"""What the bots measure: counters, HDR histograms (microseconds), a per-second
timeline. One ``Stats`` per process; ``to_wire``/``merge_wire`` carry it to the
parent, which merges them into one report.

Latency in the main histogram is counted for commands answered inside the
measured window (after the ramp-up); for open-loop bots it runs from the
command's scheduled time, not from when it was actually sent, so a server
that falls behind is not flattered (no coordinated omission).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

HIGHEST_US = 120_000_000  # 2 minutes
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_hist() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


def record(h: HdrHistogram, value_us: float) -> None:
    h.record_value(min(max(int(value_us), 1), HIGHEST_US))


def summary_ms(h: HdrHistogram) -> dict[str, float | int]:
    count = h.get_total_count()
    out: dict[str, float | int] = {"count": count}
    if count == 0:
        return out
    for p in PERCENTILES:
        out[f"p{p:g}"] = round(h.get_value_at_percentile(p) / 1000, 3)
    out["max"] = round(h.get_max_value() / 1000, 3)
    out["mean"] = round(h.get_mean_value() / 1000, 3)
    return out


def decode(encoded: bytes) -> HdrHistogram:
    h = new_hist()
    if encoded:
        h.decode_and_add(encoded)
    return h


class Stats:
    def __init__(self, t0: float, window_start: float) -> None:
        self.t0 = t0  # wall clock of the run's start (timeline second 0)
        self.window_start = window_start  # wall clock where the measured window begins
        self.window_end: float | None = None
        self.latency = new_hist()  # commands answered in the window
        self.by_type: dict[str, HdrHistogram] = {}  # every command, ramp-up included
        self.fanout = new_hist()  # events received in the window
        self.by_kind: dict[str, HdrHistogram] = {}  # every event
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.window_replies = 0
        self.timeline: dict[int, list[Any]] = {}  # second -> [replies, errors, hist]
        self.violations = 0
        self.violation_samples: list[str] = []
        self.connected = 0
        self.connected_peak = 0

    # ---- recording -------------------------------------------------------------------

    def command(self, t: str, started_wall: float, elapsed_s: float, code: str) -> None:
        now = started_wall + elapsed_s
        us = elapsed_s * 1e6
        self.commands[t] += 1
        h = self.by_type.get(t)
        if h is None:
            h = self.by_type[t] = new_hist()
        record(h, us)
        if code != "ok":
            self.errors[code] += 1
        sec = int(now - self.t0)
        slot = self.timeline.get(sec)
        if slot is None:
            slot = self.timeline[sec] = [0, 0, new_hist()]
        slot[0] += 1
        slot[1] += code != "ok"
        record(slot[2], us)
        if now >= self.window_start and (self.window_end is None or now <= self.window_end):
            self.window_replies += 1
            record(self.latency, us)

    def failure(self, t: str, code: str) -> None:
        """A command that got no reply (timeout, connection lost)."""
        self.commands[t] += 1
        self.errors[code] += 1

    def event(self, m: dict[str, Any], delay_ms: float) -> None:
        kind = m.get("kind", "?")
        us = delay_ms * 1000
        h = self.by_kind.get(kind)
        if h is None:
            h = self.by_kind[kind] = new_hist()
        record(h, us)
        self.counts["events"] += 1
        if time.time() >= self.window_start:
            record(self.fanout, us)

    def connect(self) -> None:
        self.connected += 1
        self.connected_peak = max(self.connected_peak, self.connected)

    def disconnect(self) -> None:
        self.connected -= 1

    # ---- to the parent and back -------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        return {
            "latency": self.latency.encode(),
            "by_type": {k: h.encode() for k, h in self.by_type.items()},
            "fanout": self.fanout.encode(),
            "by_kind": {k: h.encode() for k, h in self.by_kind.items()},
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "commands": dict(self.commands),
            "window_replies": self.window_replies,
            "timeline": {s: [v[0], v[1], v[2].encode()] for s, v in self.timeline.items()},
            "violations": self.violations,
            "violation_samples": self.violation_samples,
            "connected_peak": self.connected_peak,
        }

    def merge_wire(self, w: dict[str, Any]) -> None:
        self.latency.decode_and_add(w["latency"])
        self.fanout.decode_and_add(w["fanout"])
        for name, target in (("by_type", self.by_type), ("by_kind", self.by_kind)):
            for k, enc in w[name].items():
                target.setdefault(k, new_hist()).decode_and_add(enc)
        self.counts.update(w["counts"])
        self.errors.update(w["errors"])
        self.commands.update(w["commands"])
        self.window_replies += w["window_replies"]
        for s, (n, e, enc) in w["timeline"].items():
            slot = self.timeline.setdefault(int(s), [0, 0, new_hist()])
            slot[0] += n
            slot[1] += e
            slot[2].decode_and_add(enc)
        self.violations += w["violations"]
        room = 50 - len(self.violation_samples)
        self.violation_samples.extend(w["violation_samples"][: max(0, room)])
        self.connected_peak += w["connected_peak"]
