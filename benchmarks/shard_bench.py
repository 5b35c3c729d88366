"""A shard's own work per command, without the gateway, Thespian or the network.

    .venv/bin/python benchmarks/shard_bench.py [--batch 19] [--rounds 4000] [--hunts 200]

``ShardCore`` as a shard holds it (a partitioned SQLite store in a temporary
directory, syncs deferred to the end of each batch, as the shards open it),
hosting ``--hunts`` hunts of shard 0 of 2. Each round is one batch of
``--batch`` join/leave commands on consecutive hunts, decided, group-committed,
fsynced and answered, as churn200 drives a shard (~19 requests a batch since
the bridge holds a shard's next batch for its reply). Prints the CPU time and
the wall time per command over all rounds.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actors.messages import Request, Subscribe  # noqa: E402
from actors.placement import shard_for  # noqa: E402
from actors.shard.core import ShardCore  # noqa: E402
from persistence.factory import StoreConfig, open_store  # noqa: E402
from protocol.codec import parse_command  # noqa: E402

SHARDS = 2


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=19, help="commands per batch")
    p.add_argument("--rounds", type=int, default=4000, help="batches")
    p.add_argument("--hunts", type=int, default=200)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shard-bench-") as tmp:
        config = StoreConfig(data_dir=Path(tmp), sqlite_partitions=SHARDS, defer_sync=True)
        store = open_store(config)
        try:
            cpu, wall = run(ShardCore(0, SHARDS, store, snapshot_every=500), args)
        finally:
            store.close()
    commands = args.rounds * args.batch
    print(
        f"shard_bench: {commands:,} join/leave commands in batches of {args.batch} on "
        f"{args.hunts} hunts: {cpu / commands * 1e6:.1f} us CPU, "
        f"{wall / commands * 1e6:.1f} us wall per command"
    )
    return 0


def run(core: ShardCore, args: argparse.Namespace) -> tuple[float, float]:
    ids = (f"c{n}" for n in itertools.count())
    mine = (f"h{k}" for k in itertools.count() if shard_for("hunt", f"h{k}", SHARDS) == 0)
    hunts = list(itertools.islice(mine, args.hunts))
    clues = [{"text": "t", "answer": "x", "points": 1}]
    for k, hunt in enumerate(hunts):
        create = parse_command({"t": "create_hunt", "id": next(ids), "name": hunt, "clues": clues})
        core.handle("gw", [Request(0, "hunt", hunt, create, f"org{k}", f"org{k}")])
        core.handle("gw", [Request(0, "hunt", hunt, Subscribe())])
    joined = [False] * len(hunts)
    turn = itertools.cycle(range(len(hunts)))
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(args.rounds):
        batch = []
        for k in itertools.islice(turn, args.batch):
            t = "leave_hunt" if joined[k] else "join_hunt"
            joined[k] = not joined[k]
            cmd = parse_command({"t": t, "id": next(ids), "hunt_id": hunts[k]})
            batch.append(Request(k, "hunt", hunts[k], cmd, f"p{k}", f"p{k}"))
        out = core.handle("gw", batch)
        if any(msg["t"] != "ok" for _, msg in out.replies["gw"]):
            raise SystemExit(f"a command failed: {out.replies['gw']}")
    return time.process_time() - cpu, time.perf_counter() - wall


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
