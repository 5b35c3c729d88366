"""The admin console: ``python -m server.admin [COMMAND ...] [--json]``.

Without a command it is interactive (history, tab completion); with one it
runs it once and exits (``--json`` prints the endpoint's JSON for scripts).

    shards | top [--interval S] [--count N]
    actors [--type hunt|player] [--shard N] [--sort msgs|last|id|version] [--limit N]
    inspect ID [--no-activate] | events ID [--after N] [--limit M]
    passivate ID | end-hunt ID | kick PLAYER [--reason TEXT] | snapshot ID

The token comes from --token, TREASURE_ADMIN_TOKEN, or DATA_DIR/admin-token.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from rich.console import Console
from rich.markup import escape

from server.admin import console_views as views

COMMANDS = [
    "shards",
    "top",
    "actors",
    "inspect",
    "events",
    "passivate",
    "end-hunt",
    "kick",
    "snapshot",
    "help",
    "exit",
]


class ConsoleError(Exception):
    pass


class AdminClient:
    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        self.url, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s

    def call(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        url = self.url + path + (f"?{urlencode(params)}" if params else "")
        data = (
            json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        )
        headers = {"Authorization": f"Bearer {self.token}", "X-Admin-User": _user()}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ConsoleError(_http_error(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConsoleError(
                f"cannot reach the admin endpoint at {self.url} ({reason}): is the server running?"
            ) from None


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read()).get("error", "")
    except ValueError:
        message = exc.reason
    if exc.code == 401:
        return f"401: {message or 'wrong admin token'}"
    return f"{exc.code}: {message}"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "?"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server.admin", description=__doc__.split("\n")[0])
    _common(p, defaults=True)
    sub = p.add_subparsers(dest="command")
    anywhere = argparse.ArgumentParser(add_help=False)  # so "shards --json" works as well
    _common(anywhere, defaults=False)
    sub.add_parser = functools.partial(sub.add_parser, parents=[anywhere])  # type: ignore[method-assign]
    sub.add_parser("shards", help="the Director and every ShardHost")
    top = sub.add_parser("top", help="shards, refreshed live (Ctrl-C stops)")
    top.add_argument("--interval", type=float, default=1.0)
    top.add_argument("--count", type=int, default=0, help="stop after N refreshes")
    actors = sub.add_parser("actors", help="active entities")
    actors.add_argument("--type", choices=["hunt", "player"])
    actors.add_argument("--shard", type=int)
    actors.add_argument("--sort", default="msgs", choices=["msgs", "last", "id", "version"])
    actors.add_argument("--limit", type=int, default=50)
    inspect = sub.add_parser("inspect", help="one entity as its actor holds it")
    inspect.add_argument("id")
    inspect.add_argument("--no-activate", action="store_true")
    events = sub.add_parser("events", help="an entity's stored events")
    events.add_argument("id")
    events.add_argument("--after", type=int, default=0)
    events.add_argument("--limit", type=int, default=50)
    for name in ("passivate", "end-hunt", "snapshot"):
        sub.add_parser(name).add_argument("id")
    kick = sub.add_parser("kick", help="close a player's connections")
    kick.add_argument("id")
    kick.add_argument("--reason", default="")
    sub.add_parser("help")
    sub.add_parser("exit")
    return p


def _common(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    given: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument("--url", help="admin endpoint (default $TREASURE_ADMIN_URL or :8766)", **given)
    p.add_argument(
        "--token", help="admin token (default $TREASURE_ADMIN_TOKEN or the file)", **given
    )
    p.add_argument("--data-dir", type=Path, help="where admin-token is (./data)", **given)
    p.add_argument("--json", action="store_true", help="print JSON, not tables", **given)


def run(client: AdminClient, args: argparse.Namespace, out: Console) -> None:
    """One command: ask the endpoint, print the answer."""
    c, as_json = args.command, args.json
    if c == "top":
        _top(client, args, out)
        return
    data = _fetch(client, args)
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        views.show(c, data, out)


def _fetch(client: AdminClient, args: argparse.Namespace) -> Any:
    c = args.command
    if c == "shards":
        return client.call("GET", "/api/shards")
    if c == "actors":
        query = {"type": args.type, "shard": args.shard, "sort": args.sort, "limit": args.limit}
        return client.call("GET", "/api/actors", query)
    eid = quote(getattr(args, "id", ""), safe="")
    if c == "inspect":
        return client.call("GET", f"/api/entity/{eid}", {"activate": 0 if args.no_activate else 1})
    if c == "events":
        return client.call("GET", f"/api/events/{eid}", {"after": args.after, "limit": args.limit})
    if c == "kick":
        return client.call("POST", f"/api/kick/{eid}", body={"reason": args.reason})
    if c in ("passivate", "end-hunt", "snapshot"):
        return client.call("POST", f"/api/{c}/{eid}")
    raise ConsoleError(f"unknown command {c!r}; try: {', '.join(COMMANDS)}")


def _top(client: AdminClient, args: argparse.Namespace, out: Console) -> None:
    shown = 0
    try:
        while args.count <= 0 or shown < args.count:
            data = client.call("GET", "/api/shards")
            if args.json:
                print(json.dumps(data, default=str), flush=True)
            else:
                if out.is_terminal:
                    out.clear()
                views.show("shards", data, out)
                out.print(f"[dim]{time.strftime('%H:%M:%S')}  refresh every {args.interval:g} s[/]")
            shown += 1
            if args.count <= 0 or shown < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass


# ---- interactive ------------------------------------------------------------------


def interactive(client: AdminClient, base: argparse.Namespace, out: Console) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory

    history = Path(
        os.environ.get("TREASURE_ADMIN_HISTORY", Path.home() / ".treasure_admin_history")
    )
    known: set[str] = set()
    completer = WordCompleter(lambda: [*COMMANDS, *sorted(known)], WORD=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)), completer=completer, complete_while_typing=False
    )
    out.print(f"treasure admin console at {client.url}; 'help' lists commands, 'exit' leaves")
    p = parser()
    while True:
        try:
            line = session.prompt("admin> ").strip()
        except (EOFError, KeyboardInterrupt):
            return 0
        if not line:
            continue
        try:
            args = p.parse_args(["--json"] * base.json + shlex.split(line))
        except SystemExit:
            continue  # argparse already said what was wrong
        except ValueError as exc:
            out.print(f"[red]{escape(str(exc))}[/]")
            continue
        if args.command == "exit":
            return 0
        if args.command == "help":
            out.print(__doc__)
            continue
        try:
            run(client, args, out)
        except ConsoleError as exc:
            out.print(f"[red]error:[/] {escape(str(exc))}")
        known.update(views.ids_seen)


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("TREASURE_ADMIN_TOKEN")
    if token:
        return str(token)
    path = (args.data_dir or Path(os.environ.get("TREASURE_DATA_DIR", "data"))) / "admin-token"
    try:
        return path.read_text().strip()
    except OSError:
        raise ConsoleError(
            f"no admin token: give --token, set TREASURE_ADMIN_TOKEN, or point --data-dir at "
            f"the server's data directory ({path} is not readable)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    out = Console(highlight=False, soft_wrap=False)
    url = args.url or os.environ.get("TREASURE_ADMIN_URL", "http://127.0.0.1:8766")
    try:
        client = AdminClient(url, _token(args))
        if args.command is None:
            return interactive(client, args, out)
        if args.command in ("help", "exit"):
            parser().print_help()
            return 0
        run(client, args, out)
        return 0
    except ConsoleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
