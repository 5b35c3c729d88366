"""The player's rules: registration and its token."""

from __future__ import annotations

import pytest

from actors.game.events import PlayerRegistered, Reply
from actors.game.ids import hash_secret, new_player_id, new_token, split_token
from actors.game.player import (
    Authenticate,
    PlayerCommand,
    PlayerDecision,
    PlayerState,
    Register,
    decide_player,
    evolve_player,
)
from protocol.errors import ErrorCode
from protocol.messages import PlayerId

ME = PlayerId("pme")
T0 = 1_700_000_000_000


class Player:
    def __init__(self) -> None:
        self.state: PlayerState | None = None
        self.events: list[object] = []

    def send(self, cmd: PlayerCommand, now: int = T0) -> PlayerDecision:
        d = decide_player(self.state, ME, cmd, now)
        for e in d.events:
            self.state = evolve_player(self.state, e)
        self.events.extend(d.events)
        return d

    @property
    def s(self) -> PlayerState:
        assert self.state is not None
        return self.state


def registered(token_hash: str = "hash-1") -> Player:
    p = Player()
    p.send(Register("Ada", token_hash))
    return p


def test_register_makes_a_player_and_welcomes_it() -> None:
    p = Player()
    d = p.send(Register("Ada", "hash-1"), now=T0 + 5)
    assert d.events == (PlayerRegistered(T0 + 5, ME, "Ada", "hash-1"),)
    assert d.reply == Reply(result={"name": "Ada"})
    assert p.s == PlayerState(ME, "Ada", "hash-1", T0 + 5)


def test_register_again_changes_nothing() -> None:
    p = registered()
    before = p.s
    d = p.send(Register("Bob", "hash-2"))
    assert d.events == ()
    assert d.reply == Reply(result={"name": "Ada"})
    assert p.s == before


def test_authenticate_with_the_right_hash() -> None:
    p = registered("hash-1")
    d = p.send(Authenticate("hash-1"))
    assert d.events == ()
    assert d.reply == Reply(result={"name": "Ada"})


@pytest.mark.parametrize("wrong", ["hash-2", "", "hash-1 ", "HASH-1"])
def test_authenticate_with_a_wrong_hash_is_unauthorized(wrong: str) -> None:
    p = registered("hash-1")
    d = p.send(Authenticate(wrong))
    assert d.events == ()
    assert d.reply.code == ErrorCode.UNAUTHORIZED


def test_an_unknown_player_is_unauthorized() -> None:
    d = decide_player(None, ME, Authenticate("hash-1"), T0)
    assert d.events == ()
    assert d.reply.code == ErrorCode.UNAUTHORIZED


def test_real_tokens_authenticate_through_their_hash() -> None:
    player = new_player_id()
    token, kept = new_token(player)
    split = split_token(token)
    assert split is not None
    assert split[0] == player
    p = Player()
    p.send(Register("Ada", kept))
    assert p.send(Authenticate(hash_secret(split[1]))).reply.ok
    _, other_kept = new_token(player)
    assert other_kept != kept
    assert p.send(Authenticate(other_kept)).reply.code == ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("bad", ["", "nodot", ".secret", "player."])
def test_malformed_tokens_do_not_split(bad: str) -> None:
    assert split_token(bad) is None


def test_replaying_the_events_rebuilds_the_state() -> None:
    p = registered()
    p.send(Register("Bob", "hash-2"))
    replayed: PlayerState | None = None
    for e in p.events:
        assert isinstance(e, PlayerRegistered)
        replayed = evolve_player(replayed, e)
    assert replayed == p.s
    assert len(p.events) == 1


def test_evolve_refuses_a_second_registration() -> None:
    p = registered()
    with pytest.raises(ValueError):
        evolve_player(p.s, PlayerRegistered(T0, ME, "Bob", "hash-2"))
