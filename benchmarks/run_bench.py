"""Benchmark presets: the same bots against the real server and the bare baseline, in one run.

    python benchmarks/run_bench.py [PRESET ...] [--out DIR] [--shards N] [--no-baseline]

PRESET is one or more of (default: all, in this order):

- ``churn200``: 200 closed-loop bots, each churning (join/leave) its own hunt, 20 s.
  Goal: server throughput >= 0.5 x baseline.
- ``rate2000``: 2,000 bots at 1 command/s each (open loop), playing hunts of 10, 20 s.
  Goal: p99 < 25 ms.
- ``idle10k``: 10,000 idle connected bots. Reports the server's memory, all its
  processes together (RSS, and PSS which does not count shared pages twice),
  in MB and per connection. Goal: < 600 MB.
- ``fanout1000``: one hunt of 1,000 players; one player's solves reach all others.
  Goal: fan-out p99 < 100 ms.

For each preset it starts the real server (``run_server.py``, SQLite, a fresh
data directory, free ports) with
``tests/support/server_harness.py``'s ``ServerProcess``, runs ``python -m server.bots``
against it, stops it (and checks no process is left), then does the same with
``python -m server.bots.baseline`` and prints both bot summaries and a
comparison: throughput ratio server/baseline, latency and fan-out
percentiles, errors, violations, memory. JSON reports go to ``--out``
(default: a temporary directory). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server_harness import ServerProcess, free_port, stop_server  # noqa: E402

PRESETS: dict[str, list[str]] = {
    "churn200": ["--scenario", "churn", "--bots", "200", "--ramp-up", "3", "--duration", "20"],
    "rate2000": [
        *("--scenario", "play", "--bots", "2000", "--rate", "1", "--hunt-size", "10"),
        *("--ramp-up", "10", "--duration", "20", "--procs", "2"),
    ],
    "idle10k": [
        *("--scenario", "idle", "--bots", "10000", "--ramp-up", "25", "--duration", "10"),
        *("--procs", "2"),
    ],
    "fanout1000": [
        *("--scenario", "fanout", "--bots", "1000", "--ramp-up", "10", "--duration", "20"),
        *("--fanout-every", "0.2", "--procs", "2"),
    ],
}


# ---- memory of a set of processes ------------------------------------------------------


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) summed over ``pids``, in MB."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024


class MemorySampler:
    def __init__(self, pids: Any) -> None:
        self.pids = pids
        self.peak = (0.0, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            rss, pss = memory_mb(self.pids())
            if rss > self.peak[0]:
                self.peak = (rss, pss)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---- targets ----------------------------------------------------------------------------


class Baseline:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Baseline:
        cmd = [sys.executable, "-m", "server.bots.baseline", "--port", "0"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        m = re.search(r"ready at (ws://\S+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"baseline did not start: {line!r}")
        self.url = m.group(1)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        return self

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_bots(url: str, preset: str, report: Path) -> tuple[dict[str, Any], str, int]:
    cmd = [sys.executable, "-m", "server.bots", "--url", url, "--quiet", "--json", str(report)]
    done = subprocess.run(
        [*cmd, *PRESETS[preset]], check=False, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    if not report.exists():
        raise RuntimeError(f"the bots wrote no report (exit {done.returncode}):\n{out}")
    return json.loads(report.read_text()), out, done.returncode


def against_server(preset: str, out_dir: Path, shards: int) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-", dir=out_dir)) / "data"
    http = str(free_port())
    server = ServerProcess(data, "--admin-http-port", http, shards=shards)
    server.start()
    try:
        time.sleep(1.0)
        before = memory_mb(server.pids())
        with MemorySampler(server.pids) as mem:
            report, text, rc = run_bots(server.url, preset, out_dir / f"{preset}-server.json")
        procs = len(server.pids())
    finally:
        stop_server(server)
        shutil.rmtree(data.parent, ignore_errors=True)  # the reports stay, the data goes
    left = server.pids()
    return {
        "report": report,
        "text": text,
        "rc": rc,
        "mem_before": before,
        "mem_peak": mem.peak,
        "procs": procs,
        "left": left,
    }


def against_baseline(preset: str, out_dir: Path) -> dict[str, Any]:
    base = Baseline().start()
    try:
        time.sleep(0.5)
        before = memory_mb(base.pids())
        with MemorySampler(base.pids) as mem:
            report, text, rc = run_bots(base.url, preset, out_dir / f"{preset}-baseline.json")
    finally:
        base.stop()
    return {"report": report, "text": text, "rc": rc, "mem_before": before, "mem_peak": mem.peak}


# ---- the comparison ------------------------------------------------------------------------


def _pcts(s: dict[str, Any]) -> str:
    if not s.get("count"):
        return "-"
    return " / ".join(f"{s[k]:.1f}" for k in ("p50", "p90", "p99", "p99.9", "max"))


def compare(preset: str, srv: dict[str, Any], base: dict[str, Any] | None) -> str:
    rows: list[tuple[str, str, str]] = []
    r, b = srv["report"], (base or {}).get("report")

    def row(label: str, f: Any) -> None:
        rows.append((label, str(f(r, srv)), str(f(b, base)) if b is not None else "-"))

    row("throughput, replies/s (window)", lambda x, _: x["throughput_per_s"])
    row("latency ms p50/p90/p99/p99.9/max", lambda x, _: _pcts(x["latency_ms"]))
    row("fan-out ms p50/p90/p99/p99.9/max", lambda x, _: _pcts(x["fanout_ms"]))
    if "clue_solved" in r["fanout_by_kind_ms"]:
        row(
            "clue_solved fan-out ms p50/../max",
            lambda x, _: _pcts(x["fanout_by_kind_ms"].get("clue_solved", {})),
        )
    row("connected (peak)", lambda x, _: x["connected_peak"])
    row(
        "commands sent / replies",
        lambda x, _: f"{x['commands']['sent']} / {x['commands']['replies']}",
    )
    row("errors", lambda x, _: ", ".join(f"{k}: {v}" for k, v in x["errors"].items()) or "none")
    row("violations", lambda x, _: x["violations"])
    row("memory before bots, MB RSS / PSS", lambda _, t: "{:.0f} / {:.0f}".format(*t["mem_before"]))
    row("memory peak, MB RSS / PSS", lambda _, t: "{:.0f} / {:.0f}".format(*t["mem_peak"]))

    def per_conn(x: dict[str, Any], t: dict[str, Any]) -> str:
        n = max(1, x["connected_peak"])
        rss, pss = t["mem_peak"]
        d_rss, d_pss = rss - t["mem_before"][0], pss - t["mem_before"][1]
        total = f"{rss * 1024 / n:.1f} / {pss * 1024 / n:.1f}"
        return f"{total} (growth {d_rss * 1024 / n:.1f} / {d_pss * 1024 / n:.1f})"

    row("memory per connection, KB RSS / PSS", per_conn)
    width = max(len(a) for a, _, _ in rows)
    w2 = max(len(s) for _, s, _ in rows)
    lines = [f"== {preset}: server vs baseline ==", f"{'':{width}}  {'server':{w2}}  baseline"]
    lines += [f"{a:{width}}  {s:{w2}}  {c}" for a, s, c in rows]
    if b is not None and b["throughput_per_s"]:
        ratio = r["throughput_per_s"] / b["throughput_per_s"]
        lines.append(f"throughput ratio server/baseline: {ratio:.2f}")
    lines.append(f"server processes: {srv['procs']}; left after stop: {srv['left'] or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("presets", nargs="*", metavar="PRESET", help=", ".join(PRESETS))
    p.add_argument("--out", type=Path, help="where the JSON reports go")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--no-baseline", action="store_true")
    args = p.parse_args(argv)
    unknown = [x for x in args.presets if x not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"bench: {os.cpu_count()} cores, open files {soft}/{hard}, reports in {out_dir}")
    status = 0
    for preset in args.presets or list(PRESETS):
        print(f"\n######## {preset}: {' '.join(PRESETS[preset])}", flush=True)
        srv = against_server(preset, out_dir, args.shards)
        print("---- bots against the server ----\n" + srv["text"], flush=True)
        base = None
        if not args.no_baseline:
            base = against_baseline(preset, out_dir)
            print("---- bots against the baseline ----\n" + base["text"], flush=True)
        print(compare(preset, srv, base), flush=True)
        status |= srv["rc"] | (base["rc"] if base else 0) | bool(srv["left"])
    return 1 if status else 0


if __name__ == "__main__":
    raise SystemExit(main())
