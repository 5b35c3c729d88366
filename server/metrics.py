"""Prometheus metrics of one server (its own registry, so servers never share)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

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
        self.commands = Counter(
            "treasure_commands", "Commands received, by type", ["type"], registry=r
        )
        self.outcomes = Counter(
            "treasure_replies",
            "Replies sent, by command type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "treasure_command_seconds",
            "Command latency inside the server, by type",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events_out = Counter(
            "treasure_events_pushed", "Event frames sent to clients", registry=r
        )
        self.slow_clients = Counter(
            "treasure_slow_clients_dropped", "Clients closed for not keeping up", registry=r
        )
        self.bad_frames = Counter(
            "treasure_bad_frames", "Frames that were not valid commands", registry=r
        )
        # labels() takes a lock and builds a key at every call: ~2% of the gateway's CPU
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def command(self, t: str) -> None:
        self._child(self.commands, t).inc()

    def outcome(self, t: str, outcome: str, elapsed: float | None) -> None:
        self._child(self.outcomes, t, outcome).inc()
        if elapsed is not None:
            self._child(self.latency, t).observe(elapsed)
