"""The bot command: options, the processes, the live display, the report.

    python -m server.bots [--url ws://127.0.0.1:8765/]
        [--scenario churn|play|idle|fanout|reconnect|mixed] [--bots N] [--rate R]
        [--ramp-up S] [--duration S] [--hunt-size K] [--procs P]
        [--json PATH] [--plot PATH.png] [--quiet] [--allow-remote]

``--rate 0`` (the default) is closed loop: each bot sends its next command
when the previous one is answered. ``--rate R`` is open loop at R commands/s
per bot. The run lasts ``--ramp-up`` (bots start evenly spread over it; they
connect, say hello and set up their hunts) plus ``--duration`` (the measured
window). With ``--procs P`` the bots are split over P processes that send
their figures to this one. Exit status: 0, or 1 when a protocol violation was
seen, 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import multiprocessing
import queue as queue_mod
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console
from rich.live import Live
from rich.table import Table

from server.bots import report as report_mod
from server.bots.stats import Stats, decode, new_hist
from server.bots.worker import (
    SCENARIOS,
    Bot,
    Ctx,
    Spec,
    child_main,
    raise_nofile,
    run_share,
    shares,
)

FANOUT_CLUES = 100


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server.bots", description="Treasure hunt load-testing bots"
    )
    p.add_argument("--url", default="ws://127.0.0.1:8765/", help="server to load")
    p.add_argument("--scenario", choices=SCENARIOS, default="churn")
    p.add_argument("--bots", type=int, default=20)
    p.add_argument("--rate", type=float, default=0.0, help="commands/s per bot; 0: closed loop")
    p.add_argument("--ramp-up", type=float, default=2.0, help="seconds over which bots start")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds after ramp-up")
    p.add_argument("--hunt-size", type=int, default=10, help="bots per hunt in play (1 organizes)")
    p.add_argument("--procs", type=int, default=1, help="bot processes")
    p.add_argument("--reply-timeout", type=float, default=15.0)
    p.add_argument("--reconnect-every", type=int, default=20, help="commands between drops")
    p.add_argument("--p-right", type=float, default=0.1, help="share of right answers in play")
    p.add_argument("--fanout-every", type=float, default=0.25, help="seconds between solves")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--plot", type=Path, help="PNG of throughput and latency (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no live display")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    return p


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---- fan-out conductor (in the parent) ---------------------------------------------


class Conductor:
    """Organizes the one fan-out hunt and has one player solve its clues, one
    every ``every_s``, once every bot has joined; the bots measure the delay."""

    def __init__(self, spec: Spec, every_s: float) -> None:
        self.ctx = Ctx(spec)
        self.every_s = every_s
        self.settle_s = 3.0
        self.org = Bot(self.ctx, -1, "organizer")
        self.solver = Bot(self.ctx, -2, "solver")
        self.org.client.event_sink = self._on_org_event
        self.joined = 0
        self.answers: list[str] = []
        self.hunt = ""
        self.started_at: float | None = None

    def _on_org_event(self, m: dict[str, Any], delay_ms: float) -> None:
        self.ctx.stats.event(m, delay_ms)
        if m.get("kind") == "player_joined":
            self.joined += 1

    async def setup(self) -> str:
        for bot in (self.org, self.solver):
            await bot.client.connect(open_timeout=30)
            welcome = await bot.cmd("hello", paced=False, protocol=1, name=bot.client.name)
            if welcome is None or welcome.get("t") != "welcome":
                raise RuntimeError(f"fan-out conductor: hello refused: {welcome}")
        self.answers = [f"fan {k}" for k in range(FANOUT_CLUES)]
        clues = [{"text": f"c{k}", "answer": a, "points": 1} for k, a in enumerate(self.answers)]
        reply = await self.org.cmd("create_hunt", paced=False, name="fan-out", clues=clues)
        if reply is None or reply.get("t") != "ok":
            raise RuntimeError(f"fan-out hunt not created: {reply}")
        self.hunt = reply["hunt_id"]
        await self.solver.cmd("join_hunt", paced=False, hunt_id=self.hunt)
        return str(self.hunt)

    async def conduct(self, bots: int, join_deadline: float, duration_s: float) -> None:
        while self.joined < bots + 1 and time.time() < join_deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        # the joins fan out n^2/2 player_joined frames: let the bots drain them
        # so the solves measure fan-out, not the tail of the join storm
        await asyncio.sleep(self.settle_s)
        await self.org.cmd("start_hunt", paced=False, hunt_id=self.hunt)
        self.started_at = time.time()
        end = self.started_at + duration_s
        for k, answer in enumerate(self.answers):
            if time.time() >= end:
                break
            await self.solver.cmd(
                "submit_answer", paced=False, hunt_id=self.hunt, clue=k, answer=answer
            )
            await asyncio.sleep(self.every_s)
        await asyncio.sleep(min(2.0, max(0.0, end - time.time())))

    async def close(self) -> Stats:
        self.ctx.stats.window_end = time.time()
        for bot in (self.org, self.solver):
            with contextlib.suppress(Exception):
                await bot.client.close()
            self.ctx.stats.violations += len(bot.client.violations)
            self.ctx.stats.violation_samples += [f"conductor: {v}" for v in bot.client.violations]
            self.ctx.stats.counts["sent"] += bot.client.sent
            self.ctx.stats.counts["replies"] += bot.client.replies
        return self.ctx.stats


# ---- the live display ----------------------------------------------------------------


class Progress:
    def __init__(self, bots: int) -> None:
        self.bots = bots
        self.snaps: dict[int, dict[str, Any]] = {}
        self.phase = "ramp-up"
        self.started = time.monotonic()
        self._last: tuple[float, int] = (time.monotonic(), 0)
        self._rate = 0.0

    def table(self) -> Table:
        snaps = list(self.snaps.values())
        total = {k: sum(s.get(k, 0) for s in snaps) for k in ("connected", "sent", "replies")}
        errs = sum(s.get("errors", 0) for s in snaps)
        viol = sum(s.get("violations", 0) for s in snaps)
        now = time.monotonic()
        t, n = self._last
        if now - t >= 1.0:
            self._rate = (total["replies"] - n) / (now - t)
            self._last = (now, total["replies"])
        h = new_hist()
        for s in snaps:
            for enc in s.get("by_type", {}).values():
                h.add(decode(enc))
        p99 = f"{h.get_value_at_percentile(99) / 1000:.1f} ms" if h.get_total_count() else "-"
        table = Table(title=f"bots: {self.phase}, {now - self.started:.0f} s")
        for col in ("connected", "commands/s", "sent", "replies", "errors", "violations", "p99"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{total['connected']}/{self.bots}",
            f"{self._rate:.0f}",
            str(total["sent"]),
            str(total["replies"]),
            str(errs),
            str(viol),
            p99,
        )
        return table


# ---- the run -----------------------------------------------------------------------------


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    raise_nofile()
    procs = max(1, args.procs)
    conductor: Conductor | None = None
    fanout_hunt = ""
    spec = _spec(args, time.time(), "")
    if args.scenario == "fanout":
        conductor = Conductor(spec, args.fanout_every)
        fanout_hunt = await conductor.setup()
    t0 = time.time() + (1.0 if procs > 1 else 0.1)  # spawned processes need a moment
    spec = _spec(args, t0, fanout_hunt)
    if conductor is not None:
        conductor.ctx.stats.t0, conductor.ctx.stats.window_start = t0, spec.window_start
    progress = Progress(args.bots)
    live = None
    if sys.stdout.isatty() and not args.quiet:
        live = Live(progress.table(), console=console, refresh_per_second=4, transient=True)
        live.start()
    finals: list[dict[str, Any]] = []
    try:
        stop_at, done_at = await _drive(args, spec, procs, conductor, progress, live, finals)
    finally:
        if live is not None:
            live.stop()
    stats = Stats(t0, spec.window_start)
    for w in finals:
        stats.merge_wire(w)
    if conductor is not None:
        stats.merge_wire((await conductor.close()).to_wire())
    config = {**asdict(spec), "procs": procs, "ramp_up_s": args.ramp_up}
    config.pop("t0")
    window_start = spec.window_start
    if conductor is not None and conductor.started_at is not None:
        window_start = conductor.started_at
    return report_mod.build(stats, config, stop_at - window_start, done_at - t0)


def _spec(args: argparse.Namespace, t0: float, fanout_hunt: str) -> Spec:
    return Spec(
        url=args.url,
        scenario=args.scenario,
        bots=args.bots,
        rate=args.rate,
        ramp_up_s=args.ramp_up,
        duration_s=args.duration,
        hunt_size=args.hunt_size,
        t0=t0,
        reply_timeout_s=args.reply_timeout,
        reconnect_every=max(1, args.reconnect_every),
        p_right=args.p_right,
        seed=args.seed,
        fanout_hunt=fanout_hunt,
    )


async def _drive(  # noqa: PLR0915
    args: argparse.Namespace,
    spec: Spec,
    procs: int,
    conductor: Conductor | None,
    progress: Progress,
    live: Live | None,
    finals: list[dict[str, Any]],
) -> tuple[float, float]:
    """Run the bots until the end of the window; return (stop time, end time)."""
    ranges = shares(spec, procs)
    stop_flag = [False]
    mp = multiprocessing.get_context("spawn")
    stop_ev = mp.Event()
    q: Any = mp.Queue()
    children: list[Any] = []
    local: asyncio.Task[dict[str, Any]] | None = None
    if procs == 1:

        def snap(s: dict[str, Any]) -> None:
            progress.snaps[0] = s

        lo, hi = ranges[0]
        local = asyncio.create_task(run_share(spec, lo, hi, lambda: stop_flag[0], snap))
    else:
        for lo, hi in ranges:
            child = mp.Process(target=child_main, args=(spec, lo, hi, stop_ev, q), daemon=True)
            child.start()
            children.append(child)
    conduct = None
    if conductor is not None:
        deadline = spec.window_start + 60.0
        conduct = asyncio.create_task(conductor.conduct(spec.bots, deadline, spec.duration_s))
    stop_at = spec.window_start + spec.duration_s
    stopped: float | None = None
    pending = {lo for lo, _ in ranges}
    while pending:
        await asyncio.sleep(0.1)
        now = time.time()
        if stopped is None:
            if now >= spec.window_start:
                progress.phase = "running"
            over = conduct.done() if conduct is not None else now >= stop_at
            if over:
                stopped = now
                stop_flag[0] = True
                stop_ev.set()
                progress.phase = "stopping"
        _drain(q, progress, finals, pending)
        if local is not None and local.done():
            finals.append(local.result())
            pending.clear()
        for child, (lo, _) in zip(children, ranges, strict=False):
            if lo in pending and not child.is_alive():
                _drain(q, progress, finals, pending)
                if lo in pending:
                    pending.discard(lo)
                    finals.append(_died(spec, f"bot process {lo} exited with {child.exitcode}"))
        if live is not None:
            live.update(progress.table())
    if conduct is not None:
        await conduct
    for child in children:
        child.join(10)
    q.close()
    return stopped or time.time(), time.time()


def _drain(q: Any, progress: Progress, finals: list[dict[str, Any]], pending: set[int]) -> None:
    while True:
        try:
            kind, lo, payload = q.get_nowait()
        except queue_mod.Empty:
            return
        if kind == "progress":
            progress.snaps[lo] = payload
        else:
            finals.append(payload)
            pending.discard(lo)


def _died(spec: Spec, why: str) -> dict[str, Any]:
    stats = Stats(spec.t0, spec.window_start)
    stats.violations = 1
    stats.violation_samples.append(why)
    stats.errors["bot_process_died"] += 1
    return stats.to_wire()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.allow_remote and not is_loopback(args.url):
        print(f"refusing to load {args.url}: not a loopback host (--allow-remote)", file=sys.stderr)
        return 2
    if args.bots < 1 or args.duration <= 0 or args.ramp_up < 0 or args.rate < 0:
        print("--bots must be >= 1, --duration > 0, --ramp-up and --rate >= 0", file=sys.stderr)
        return 2
    console = Console() if sys.stdout.isatty() else Console(width=140)
    report = asyncio.run(run(args, console))
    report_mod.print_summary(report, console)
    if args.json:
        report_mod.write_json(report, args.json)
    if args.plot:
        report_mod.plot(report, args.plot, console)
    return 1 if report["violations"] else 0
