"""docs/protocol.md, the client authors' reference, names what the code speaks.

Its tables of error codes, messages, clues, events and views are read and compared
with ``protocol/`` (and the game's events and views): a code, message or field added
on one side and not the other fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from actors.game import events
from actors.game.hunt_state import evolve, hunt_view
from protocol import messages, v1
from protocol.errors import ErrorCode
from protocol.messages import HuntId, PlayerId

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
NAME = re.compile(r"`([a-z_]+)`(\??)")


def rows(heading: str) -> dict[str, list[str]]:
    """First cell -> the other cells, of the first table under ``heading``."""
    text = DOC.read_text()
    assert f"\n{heading}\n" in text, f"docs/protocol.md has no {heading!r}"
    section = text.split(f"\n{heading}\n", 1)[1]
    lines = section.split("\n|", 1)[1].split("\n\n", 1)[0].splitlines()
    table: dict[str, list[str]] = {}
    for line in lines[2:]:  # after the header and its rule
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key = cells[0].strip("`")
        assert key not in table, f"{key} has two rows under {heading!r}"
        table[key] = cells[1:]
    return table


def names(cell: str) -> dict[str, bool]:
    """The field names a cell lists -> whether it is marked optional (``?``)."""
    return {m[1]: m[2] == "?" for m in NAME.finditer(cell)}


def fields_of(cls: type) -> dict[str, bool]:
    """Wire fields of a dataclass -> whether it may be left out (it has a default)."""
    out: dict[str, bool] = {}
    for f in dataclasses.fields(cls):
        if cls is messages.Ok and f.name == "result":
            continue  # its keys sit beside ``t`` (see ``Ok``); the command tables list them
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = not missing
    return out


def wire_types() -> dict[str, type]:
    """Every message class of ``protocol.messages`` by its wire ``t``."""
    found: dict[str, type] = {}
    for _, cls in inspect.getmembers(messages, inspect.isclass):
        t = getattr(cls, "TYPE", None)
        if dataclasses.is_dataclass(cls) and isinstance(t, str):
            found[t] = cls
    return found


SERVER = {cls.TYPE for cls in get_args(messages.ServerMessage)}


def test_the_error_code_table_is_the_protocols_error_codes() -> None:
    assert set(rows("## Error codes")) == {code.value for code in ErrorCode}


def test_the_command_table_is_every_command_the_protocol_parses() -> None:
    documented = set(rows("### Client to server"))
    assert documented == set(wire_types()) - SERVER
    assert documented == set(v1.COMMANDS)


@pytest.mark.parametrize("t", sorted(v1.COMMANDS))
def test_each_command_has_the_fields_of_its_message(t: str) -> None:
    assert names(rows("### Client to server")[t][0]) == fields_of(wire_types()[t])


def test_the_server_message_table_is_every_server_message() -> None:
    documented = rows("### Server to client")
    assert set(documented) == SERVER
    for t, cells in documented.items():
        assert names(cells[0]) == fields_of(wire_types()[t]), t


def test_the_clue_table_has_the_fields_of_each_clue() -> None:
    clues = rows("### Clues")
    assert set(clues) == {"answer", "location"}
    assert names(clues["answer"][0]) == fields_of(messages.AnswerClue)
    assert names(clues["location"][0]) == fields_of(messages.LocationClue)


def sample(cls: type) -> Any:
    """An event of ``cls`` with placeholder values, enough to see its pushed data."""
    values = {f.name: () if f.name == "clues" else None for f in dataclasses.fields(cls)}
    return cls(**values)


def test_the_event_table_is_every_pushed_event_and_its_data() -> None:
    pushed = {cls.NAME: cls for cls in get_args(events.HuntEvent)}
    documented = rows("## Events")
    assert set(documented) == set(pushed)
    for kind, cls in pushed.items():
        assert set(names(documented[kind][0])) == set(events.public_data(sample(cls))), kind


def test_the_view_table_is_what_get_hunt_answers() -> None:
    created = events.HuntCreated(
        1, HuntId("h1"), "Old town", PlayerId("p1"), (events.ClueDef("Where?", 10, "Tower"),), 60, 5
    )
    state = evolve(evolve(None, created), events.PlayerJoined(2, PlayerId("p2"), "Bo"))
    view = hunt_view(state)
    documented = rows("## Views")
    assert set(names(documented["HUNT_VIEW"][0])) == set(view)
    assert set(names(documented["a clue of HUNT_VIEW"][0])) == set(view["clues"][0])
    assert set(names(documented["ENTRY"][0])) == set(view["players"][0])
