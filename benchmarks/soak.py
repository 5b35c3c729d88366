"""Soak: mixed load against a fresh server for a while, watching memory and latency.

    python benchmarks/soak.py [--minutes 10] [--bots 300] [--rate 2] [--store sqlite]

Starts ``run_server.py`` (its own data directory and ports), runs
``python -m server.bots --scenario mixed`` for the whole time, samples the RSS
of every server process every few seconds, then prints one row per interval
(server memory, replies/s, p50/p99) and a verdict. It exits 1 when memory
keeps growing after warm-up (more than ``--max-growth-mb`` projected over the
second half of the run) or when the bots saw protocol violations.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.procs import rss_kb  # noqa: E402
from tests.support.server_harness import ServerProcess, stop_server  # noqa: E402


def sample_memory(
    server: ServerProcess, every_s: float, stop: threading.Event
) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    while not stop.wait(every_s):
        mb = sum(rss_kb(p) for p in server.pids()) / 1024
        samples.append((time.monotonic() - start, mb))
    return samples


def slope_mb_per_s(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--bots", type=int, default=300)
    ap.add_argument("--rate", type=float, default=2.0, help="commands/s per bot")
    ap.add_argument("--store", default="sqlite")
    ap.add_argument("--cassandra-hosts", default="127.0.0.1:9042")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds per printed row")
    ap.add_argument("--max-growth-mb", type=float, default=30.0)
    args = ap.parse_args()

    duration = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    extra = ["--store", args.store]
    if args.store == "cassandra":
        extra += [
            "--cassandra-hosts",
            args.cassandra_hosts,
            "--keyspace",
            f"soak_{int(time.time())}",
        ]
    server = ServerProcess(work / "data", *extra).start()
    stop = threading.Event()
    samples: list[tuple[float, float]] = []
    sampler = threading.Thread(
        target=lambda: samples.extend(sample_memory(server, 5.0, stop)), daemon=True
    )
    sampler.start()
    report_path = work / "bots.json"
    try:
        bots = [sys.executable, "-m", "server.bots", "--url", server.url, "--scenario", "mixed"]
        bots += ["--bots", str(args.bots), "--rate", str(args.rate), "--ramp-up", "10"]
        bots += ["--duration", str(duration), "--json", str(report_path), "--quiet"]
        subprocess.run(bots, cwd=ROOT, check=False, timeout=duration + 300)
        report = json.loads(report_path.read_text())
    finally:
        stop.set()
        sampler.join()
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
    return verdict(report, samples, args)


def verdict(report: dict, samples: list[tuple[float, float]], args: argparse.Namespace) -> int:
    timeline = report["timeline"]
    print(f"{'minute':>7} {'server MB':>10} {'replies/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    t0 = timeline[0]["t"] if timeline else 0
    for start in range(0, int(args.minutes * 60) + 1, int(args.interval)):
        rows = [r for r in timeline if start <= r["t"] - t0 < start + args.interval]
        mem = [mb for s, mb in samples if start <= s < start + args.interval]
        if not rows:
            continue
        p50 = statistics.median(r["p50_ms"] or 0 for r in rows)
        p99 = max(r["p99_ms"] or 0 for r in rows)
        rate = sum(r["replies"] for r in rows) / len(rows)
        mb = f"{statistics.fmean(mem):10.1f}" if mem else f"{'-':>10}"
        print(f"{start / 60:7.1f} {mb} {rate:10.0f} {p50:8.1f} {p99:8.1f}")
    warm = samples[len(samples) // 5 :]  # after warm-up
    growth = slope_mb_per_s(warm) * (args.minutes * 30)  # projected over the second half
    lat = report["latency_ms"]
    print(
        f"commands {report['commands']['replies']:,}, throughput {report['throughput_per_s']}/s, "
        f"p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, errors {report['errors']}, "
        f"violations {report['violations']}"
    )
    first, last = (samples[0][1], samples[-1][1]) if samples else (0.0, 0.0)
    print(f"server memory {first:.1f} MB -> {last:.1f} MB; trend after warm-up {growth:+.1f} MB")
    failed = growth > args.max_growth_mb or report["violations"] > 0
    print("SOAK FAILED" if failed else "SOAK OK")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
