"""Event store throughput and append latency, per backend.

    .venv/bin/python benchmarks/store_bench.py [--backend sqlite|cassandra|both]
        [--cassandra-hosts 127.0.0.1:9042] [--single N] [--batches N]

Workloads (100-byte-ish events, as the game writes them):

* ``single``: one event per ``append`` call, round robin over 50 streams.
* ``batch50``: ``append_many`` of 50 requests, one event for each of 50 streams,
  the group commit of a shard's batch; latency is per ``append_many`` call.

Without ``--cassandra-hosts`` a throwaway local node is started with
``scripts/cassandra`` (in a temporary directory) and stopped at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from persistence import AppendRequest, EventStore, NewEvent  # noqa: E402
from persistence.cassandra import CassandraEventStore  # noqa: E402
from persistence.sqlite import SqliteEventStore  # noqa: E402

STREAMS = 50
WARMUP_FRACTION = 0.2


@dataclass
class Result:
    backend: str
    workload: str
    events: int
    seconds: float
    histogram: HdrHistogram

    def line(self) -> str:
        p50 = self.histogram.get_value_at_percentile(50) / 1000
        p99 = self.histogram.get_value_at_percentile(99) / 1000
        rate = self.events / self.seconds
        return (
            f"{self.backend:<13}{self.workload:<9}{self.events:>9}{self.seconds:>9.2f}"
            f"{rate:>12,.0f}{p50:>10.2f}{p99:>10.2f}"
        )


HEADER = f"{'backend':<13}{'workload':<9}{'events':>9}{'seconds':>9}{'events/s':>12}" + (
    f"{'p50 ms':>10}{'p99 ms':>10}"
)


def event(n: int) -> NewEvent:
    return NewEvent(
        "treasure_found",
        1,
        {"hunt": "h-01HZX3", "player": f"p-{n % 997}", "clue": n % 12, "pts": 10},
        1_700_000_000_000 + n,
        {"cmd": f"c-{n}", "corr": "k3"},
    )


class Bench:
    def __init__(self, store: EventStore, backend: str) -> None:
        self.store, self.backend = store, backend
        self.prefix = uuid.uuid4().hex[:8]
        self.versions: dict[str, int] = {}

    def stream(self, i: int) -> str:
        return f"player-{self.prefix}-{i}"

    def warm_up(self, seconds: float) -> None:
        """Batches on streams of their own until ``seconds`` pass (lets Cassandra's JIT settle)."""
        other = Bench(self.store, self.backend)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            other.batch50(1, warm=False)

    def single(self, total: int) -> Result:
        def one(k: int) -> int:
            s = self.stream(k % STREAMS)
            self.versions[s] = self.store.append(s, self.versions.get(s, 0), [event(k)])
            return 1

        return self._measure("single", total, one)

    def batch50(self, batches: int, *, warm: bool = True) -> Result:
        def one(k: int) -> int:
            requests = [
                AppendRequest(self.stream(i), self.versions.get(self.stream(i), 0), [event(k)])
                for i in range(STREAMS)
            ]
            outcomes = self.store.append_many(requests)
            for req, outcome in zip(requests, outcomes, strict=True):
                if not isinstance(outcome, int):
                    raise outcome
                self.versions[req.stream] = outcome
            return STREAMS

        return self._measure("batch50", batches, one, warm=warm)

    def _measure(
        self, workload: str, count: int, op: Callable[[int], int], *, warm: bool = True
    ) -> Result:
        for k in range(int(count * WARMUP_FRACTION) if warm else 0):
            op(k)
        histogram = HdrHistogram(1, 60_000_000, 3)  # microseconds
        events = 0
        start = time.perf_counter()
        for k in range(count):
            t0 = time.perf_counter()
            events += op(k)
            histogram.record_value(max(1, int((time.perf_counter() - t0) * 1_000_000)))
        return Result(self.backend, workload, events, time.perf_counter() - start, histogram)


@contextmanager
def local_cassandra(commitlog_sync: str) -> Iterator[str]:
    script = ROOT / "scripts" / "cassandra"
    with tempfile.TemporaryDirectory(prefix="cassandra-bench-") as directory:
        proc = subprocess.run(
            [str(script), "start", "--dir", directory, "--commitlog-sync", commitlog_sync],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"cannot start a local Cassandra:\n{proc.stdout}{proc.stderr}")
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        print(
            f"# local Cassandra on port {values['PORT']} (commitlog_sync: {commitlog_sync}),"
            f" up in {values['STARTUP_SECONDS']} s",
            flush=True,
        )
        try:
            yield f"127.0.0.1:{values['PORT']}"
        finally:
            subprocess.run([str(script), "stop", "--dir", directory], check=False, text=True)


def run_sqlite(args: argparse.Namespace) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="sqlite-bench-") as directory:
        store = SqliteEventStore(
            Path(directory) / "events.sqlite3", synchronous=args.sqlite_synchronous
        )
        try:
            bench = Bench(store, f"sqlite/{args.sqlite_synchronous.lower()}")
            bench.warm_up(1.0)
            return [bench.single(args.single), bench.batch50(args.batches)]
        finally:
            store.close()


def run_cassandra(args: argparse.Namespace, hosts: list[str]) -> list[Result]:
    store = CassandraEventStore(
        hosts=hosts,
        keyspace=f"bench_{uuid.uuid4().hex[:12]}",
        replication={"class": "SimpleStrategy", "replication_factor": 1},
        request_timeout_s=10.0,
    )
    try:
        bench = Bench(store, "cassandra")
        bench.warm_up(args.warmup_s)
        return [bench.single(args.single), bench.batch50(args.batches)]
    finally:
        store.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "cassandra", "both"], default="both")
    parser.add_argument("--cassandra-hosts", default="", help="host:port,...; default: start one")
    parser.add_argument("--single", type=int, default=5_000, help="single-event appends")
    parser.add_argument("--batches", type=int, default=400, help="50-stream append_many calls")
    parser.add_argument(
        "--commitlog-sync",
        choices=["batch", "periodic"],
        default="batch",
        help="of the local node: batch = every ok durable (default), periodic = faster",
    )
    parser.add_argument("--warmup-s", type=float, default=15.0, help="Cassandra warm-up")
    parser.add_argument("--sqlite-synchronous", default="FULL", choices=["FULL", "NORMAL", "OFF"])
    args = parser.parse_args(argv)

    results: list[Result] = []
    if args.backend in ("sqlite", "both"):
        results += run_sqlite(args)
    if args.backend in ("cassandra", "both"):
        if args.cassandra_hosts:
            results += run_cassandra(args, args.cassandra_hosts.split(","))
        else:
            with local_cassandra(args.commitlog_sync) as host:
                results += run_cassandra(args, [host])
    print(HEADER)
    for result in results:
        print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
