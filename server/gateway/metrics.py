"""Prometheus metrics of one server (its own registry, so servers never share)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("treasure_connections", "Open WebSocket connections", registry=r)
        self.lobby = Gauge(
            "treasure_lobby_connections",
            "Connections not yet past hello (the loop serves a few of them a turn)",
            registry=r,
        )
        self.accepted = Gauge(
            "treasure_accepted_connections", "Connections accepted since the start", registry=r
        )
        self.accept_queue = Gauge(
            "treasure_accept_queue",
            "Connections waiting in the kernel's queue to be accepted (paced by --accept-rate)",
            registry=r,
        )
        self.commands = CommandStats()
        r.register(self.commands)
        self.events_out = Counter(
            "treasure_events_pushed", "Event frames sent to clients", registry=r
        )
        self.slow_clients = Counter(
            "treasure_slow_clients_dropped", "Clients closed for not keeping up", registry=r
        )
        self.bad_frames = Counter(
            "treasure_bad_frames", "Frames that were not valid commands", registry=r
        )

    def command(self, t: str) -> None:
        self.commands.command(t)

    def outcome(self, t: str, outcome: str, elapsed: float | None) -> None:
        self.commands.outcome(t, outcome, elapsed)


class CommandStats(Collector):
    """Commands, replies and their latency by type: counted in plain dicts by the loop,
    made into metric families when ``/metrics`` is rendered (on the loop too).

    A ``prometheus_client`` child per update (a lock each, and a walk of the buckets
    for the latency) made the three updates of every command a visible share of the
    gateway's CPU (docs/performance.md)."""

    def __init__(self) -> None:
        self.commands: dict[str, int] = {}
        self.replies: dict[tuple[str, str], int] = {}
        self.latency: dict[str, list[float]] = {}  # a count per bucket, +Inf, then the sum

    def command(self, t: str) -> None:
        self.commands[t] = self.commands.get(t, 0) + 1

    def outcome(self, t: str, outcome: str, elapsed: float | None) -> None:
        key = (t, outcome)
        self.replies[key] = self.replies.get(key, 0) + 1
        if elapsed is not None:
            row = self.latency.get(t)
            if row is None:
                row = self.latency[t] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            row[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
            row[-1] += elapsed

    def collect(self) -> Iterator[Metric]:
        commands = CounterMetricFamily(
            "treasure_commands", "Commands received, by type", labels=["type"]
        )
        for t, n in sorted(self.commands.items()):
            commands.add_metric([t], n)
        yield commands
        replies = CounterMetricFamily(
            "treasure_replies",
            "Replies sent, by command type and outcome",
            labels=["type", "outcome"],
        )
        for (t, outcome), n in sorted(self.replies.items()):
            replies.add_metric([t, outcome], n)
        yield replies
        latency = HistogramMetricFamily(
            "treasure_command_seconds",
            "Command latency inside the server, by type",
            labels=["type"],
        )
        for t, row in sorted(self.latency.items()):
            latency.add_metric([t], buckets(LATENCY_BUCKETS, row[:-2], sum(row[:-1])), row[-1])
        yield latency


def buckets(
    bounds: Sequence[float], counts: Sequence[float], count: float
) -> list[tuple[str, float]]:
    """A histogram's cumulative buckets, from a count per bound and the count of all."""
    cumulative = accumulate(counts)
    out = [(repr(float(b)), float(c)) for b, c in zip(bounds, cumulative, strict=True)]
    out.append(("+Inf", float(count)))
    return out
