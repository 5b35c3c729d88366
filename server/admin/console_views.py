"""How the console shows the endpoint's answers: rich tables for people."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

ids_seen: set[str] = set()  # for tab completion


def show(command: str, data: Any, out: Console) -> None:
    if command == "shards":
        shards(data, out)
    elif command == "actors":
        actors(data, out)
    elif command == "inspect":
        inspect(data, out)
    elif command == "events":
        events(data, out)
    else:
        action(data, out)


def _ago(t: float | None) -> str:
    return "-" if not t else f"{max(0.0, time.time() - t):.1f} s ago"


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f} MB"


def shards(data: dict[str, Any], out: Console) -> None:
    d = data["director"]
    table = Table(title="actors")
    heads = ("actor", "pid", "hunts", "players", "in flight", "unread B", "msgs/s", "batches")
    for head in (*heads, "memory"):
        table.add_column(head)
    table.add_row("director", str(d["pid"]), "-", "-", "-", "-", "-", "-", _mb(d["memory_kb"]))
    for s in data["shards"]:
        name = f"shard {s['index']}"
        if not s.get("up"):
            dead = (name, str(s["pid"]), "", "", str(s["in_flight"]), "", "", "DEAD")
            table.add_row(*dead, escape(s["error"]))
            continue
        avg = s["messages"] / s["batches"] if s["batches"] else 0.0
        batches = f"{s['batches']} (avg {avg:.1f}, max {s['largest_batch']})"
        e = s["entities"]
        row = (name, str(s["pid"]), str(e.get("hunt", 0)), str(e.get("player", 0)))
        unread = str(s.get("backlog_bytes", 0))  # commands the shard has yet to read
        table.add_row(
            *row, str(s["in_flight"]), unread, f"{s['msgs_per_s']:g}", batches, _mb(s["memory_kb"])
        )
    out.print(table)
    g = data["gateway"]
    out.print(
        f"gateway {g['id']}: {g['connections']} connections, {g['players_online']} players "
        f"online, {g['in_flight']} requests in flight, channels up to shards "
        f"{g.get('channels_up', [])}; director restarts {d['restarts']}\n"
        f"admission: {g.get('accepted', 0)} accepted, {g.get('accept_queue', 0)} waiting to be "
        f"accepted, {g.get('lobby', 0)} in the lobby (not past hello)"
    )


def actors(rows: list[dict[str, Any]], out: Console) -> None:
    table = Table(title=f"{len(rows)} active entities")
    for head in ("id", "kind", "shard", "msgs", "seq", "last activity", "about"):
        table.add_column(head, no_wrap=head == "id")
    for r in rows:
        ids_seen.add(r["id"])
        about = escape(r.get("name", ""))
        if r["kind"] == "hunt":
            about = f"{about} ({r['status']}, {r['players']} players)"
        row = (r["id"], r["kind"], str(r["shard"]), str(r["messages"]), str(r["version"]))
        table.add_row(*row, _ago(r["last_active"]), about)
    out.print(table)


def inspect(d: dict[str, Any], out: Console) -> None:
    ids_seen.add(d["id"])
    if d.get("activated_now"):
        out.print(f"[yellow]{d['id']} was not in memory: activated it from the store to answer[/]")
    table = Table(show_header=False, title=f"{d['kind']} {d['id']}")
    table.add_column(no_wrap=True)
    table.add_column()
    facts = [
        ("shard", d["shard"]),
        ("seq", d["version"]),
        ("snapshot seq", d["snapshot_seq"]),
        ("messages", d["messages"]),
        ("last activity", _ago(d["last_active"])),
        ("mailbox depth", f"{d['mailbox']['depth']} ({d['mailbox']['note']})"),
        ("in flight here", d.get("in_flight_here", 0)),
    ]
    if d["kind"] == "hunt":
        facts.append(("subscribed gateways", ", ".join(d.get("subscribers", [])) or "-"))
        facts.append(("watchers here", ", ".join(d.get("watchers_here", [])) or "-"))
    else:
        facts.append(("connections here", d.get("connections_here", 0)))
    for name, value in facts:
        table.add_row(name, escape(str(value)))
    out.print(table)
    out.print("state as the actor holds it:")
    out.print_json(json.dumps(d["state"], default=str))


def events(d: dict[str, Any], out: Console) -> None:
    table = Table(title=f"{d['stream']}: {len(d['events'])} events after seq {d['after']}")
    for head in ("seq", "type", "at", "data", "cmd"):
        table.add_column(head)
    for e in d["events"]:
        at = time.strftime("%H:%M:%S", time.localtime(e["at"] / 1000))
        cmd = e["metadata"].get("cmd", "")
        table.add_row(str(e["seq"]), e["type"], at, escape(json.dumps(e["data"])), escape(cmd))
    out.print(table)


def action(d: dict[str, Any], out: Console) -> None:
    details = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("action", "id", "by"))
    out.print(f"{d['action']} {d['id']}: done ({details})")
