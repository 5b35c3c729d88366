"""The end of a run: the JSON report, the summary table, the optional plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from server.bots.stats import PERCENTILES, Stats, summary_ms


def build(
    stats: Stats, config: dict[str, Any], window_s: float, elapsed_s: float
) -> dict[str, Any]:
    window_s = max(window_s, 1e-9)
    timeline = []
    for sec in sorted(stats.timeline):
        n, errors, h = stats.timeline[sec]
        s = summary_ms(h)
        timeline.append(
            {
                "t": sec,
                "replies": n,
                "errors": errors,
                "p50_ms": s.get("p50"),
                "p99_ms": s.get("p99"),
            }
        )
    counts = dict(stats.counts)
    sent, replies = counts.pop("sent", 0), counts.pop("replies", 0)
    return {
        "config": config,
        "elapsed_s": round(elapsed_s, 3),
        "window_s": round(window_s, 3),
        "connected_peak": stats.connected_peak,
        "commands": {
            "sent": sent,
            "replies": replies,
            "unanswered": sent - replies,
            "in_window": stats.window_replies,
            "by_type": dict(sorted(stats.commands.items())),
        },
        "throughput_per_s": round(stats.window_replies / window_s, 1),
        "latency_ms": summary_ms(stats.latency),
        "latency_by_type_ms": {t: summary_ms(h) for t, h in sorted(stats.by_type.items())},
        "fanout_ms": summary_ms(stats.fanout),
        "fanout_by_kind_ms": {k: summary_ms(h) for k, h in sorted(stats.by_kind.items())},
        "events_received": counts.pop("events", 0),
        "errors": dict(sorted(stats.errors.items())),
        "violations": stats.violations,
        "violation_samples": stats.violation_samples[:50],
        "counts": counts,
        "timeline": timeline,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


def _pct_row(label: str, s: dict[str, Any]) -> list[str]:
    if not s.get("count"):
        return [label, "0", *["-"] * (len(PERCENTILES) + 1)]
    cells = [f"{s[f'p{p:g}']:.2f}" for p in PERCENTILES]
    return [label, str(s["count"]), *cells, f"{s['max']:.2f}"]


def print_summary(report: dict[str, Any], console: Console) -> None:
    cfg, cmds = report["config"], report["commands"]
    head = Table(title="bot run", show_header=False)
    head.add_column("what")
    head.add_column("value", justify="right")
    rate = f"{cfg['rate']:g}/s per bot (open loop)" if cfg["rate"] else "closed loop"
    head.add_row(
        "scenario", f"{cfg['scenario']}, {cfg['bots']} bots, {rate}, {cfg['procs']} proc(s)"
    )
    head.add_row("target", cfg["url"])
    head.add_row("window", f"{report['window_s']:.1f} s (after {cfg['ramp_up_s']:g} s ramp-up)")
    head.add_row("connected (peak)", str(report["connected_peak"]))
    head.add_row("commands sent / replies", f"{cmds['sent']} / {cmds['replies']}")
    head.add_row("throughput (window)", f"{report['throughput_per_s']:.1f} replies/s")
    head.add_row("events received", str(report["events_received"]))
    for k, v in sorted(report["counts"].items()):
        head.add_row(k.replace("_", " "), str(v))
    errors = ", ".join(f"{k}: {v}" for k, v in report["errors"].items()) or "none"
    head.add_row("errors by code", errors)
    head.add_row("protocol violations", str(report["violations"]))
    console.print(head)

    lat = Table(title="latency, ms (HDR histogram)")
    for col in ("what", "count", *(f"p{p:g}" for p in PERCENTILES), "max"):
        lat.add_column(col, justify="left" if col == "what" else "right")
    lat.add_row(*_pct_row("all commands (window)", report["latency_ms"]))
    for t, s in report["latency_by_type_ms"].items():
        lat.add_row(*_pct_row(f"  {t} (whole run)", s))
    lat.add_row(*_pct_row("event fan-out delay (window)", report["fanout_ms"]))
    for k, s in report["fanout_by_kind_ms"].items():
        lat.add_row(*_pct_row(f"  {k} (whole run)", s))
    console.print(lat)
    for sample in report["violation_samples"][:10]:
        console.print(f"violation: {sample}", markup=False, highlight=False)


def plot(report: dict[str, Any], path: Path, console: Console) -> None:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        console.print(f"--plot {path}: matplotlib is not installed; no plot written")
        return
    tl = report["timeline"]
    secs = [p["t"] for p in tl]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ax1.plot(secs, [p["replies"] for p in tl], label="replies/s")
    ax1.plot(secs, [p["errors"] for p in tl], label="errors/s")
    ax1.set_ylabel("per second")
    ax1.legend()
    ax2.plot(secs, [p["p50_ms"] for p in tl], label="p50")
    ax2.plot(secs, [p["p99_ms"] for p in tl], label="p99")
    ax2.set_ylabel("latency, ms")
    ax2.set_xlabel("seconds since start")
    ax2.legend()
    cfg = report["config"]
    fig.suptitle(f"{cfg['scenario']}: {cfg['bots']} bots against {cfg['url']}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    console.print(f"plot written to {path}")
