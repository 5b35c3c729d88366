"""Shard-side Prometheus metrics, built at scrape time from the shards' own stats.

The admin endpoint asks every shard for its stats (an ``Inspect`` over
Thespian) just before rendering ``/metrics``; this collector turns the latest
answers into metric families next to the gateway's own metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from server.gateway.metrics import buckets

COUNTERS = {
    "messages": ("treasure_shard_messages", "Entity messages handled by a shard"),
    "batches": ("treasure_shard_batches", "Batches handled by a shard"),
    "events_appended": ("treasure_events_appended", "Events appended to the store"),
    "store_errors": ("treasure_store_errors", "Failed store appends and activations"),
    "activations": ("treasure_activations", "Entities loaded into memory"),
    "passivations": ("treasure_passivations", "Entities dropped from memory"),
}


class ShardCollector(Collector):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def update(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        rows = self.rows
        up = GaugeMetricFamily("treasure_shard_up", "1 if the shard answered", labels=["shard"])
        for row in rows:
            up.add_metric([str(row["index"])], 1.0 if row.get("up") else 0.0)
        yield up
        live = [r for r in rows if r.get("up")]
        for key, (name, text) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=["shard"])
            for row in live:
                family.add_metric([str(row["index"])], float(row[key]))
            yield family
        yield _entities(live)
        yield _gauge(
            live, "treasure_shard_memory_bytes", "Shard RSS", lambda r: r["memory_kb"] * 1024
        )
        yield _gauge(
            live, "treasure_shard_messages_per_second", "Recent rate", lambda r: r["msgs_per_s"]
        )
        yield _histogram(
            live,
            "treasure_shard_batch_size",
            "Messages per batch",
            "batch_buckets",
            "batch_counts",
            lambda r: (r["batches"], r["messages"]),
        )
        yield _histogram(
            live,
            "treasure_append_seconds",
            "Latency of one group-committed append",
            "append_buckets",
            "append_counts",
            lambda r: (r["appends"], r["append_seconds"]),
        )


def _entities(rows: list[dict[str, Any]]) -> Metric:
    family = GaugeMetricFamily(
        "treasure_active_entities", "Entities in memory", labels=["shard", "kind"]
    )
    for row in rows:
        for kind, count in row["entities"].items():
            family.add_metric([str(row["index"]), kind], float(count))
    return family


def _gauge(rows: list[dict[str, Any]], name: str, text: str, value: Any) -> Metric:
    family = GaugeMetricFamily(name, text, labels=["shard"])
    for row in rows:
        family.add_metric([str(row["index"])], float(value(row)))
    return family


def _histogram(
    rows: list[dict[str, Any]], name: str, text: str, bounds: str, counts: str, total: Any
) -> Metric:
    family = HistogramMetricFamily(name, text, labels=["shard"])
    for row in rows:
        count, value_sum = total(row)
        family.add_metric(
            [str(row["index"])], buckets(row[bounds], row[counts], count), float(value_sum)
        )
    return family
