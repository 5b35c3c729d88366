"""The player's rules: registration, its token, and the hunts it belongs to."""

from __future__ import annotations

import pytest

from actors.events import MembershipChanged, PlayerRegistered, Reply
from actors.ids import hash_secret, hunt_id_for, new_player_id, new_token, split_token
from actors.player import (
    Authenticate,
    NoteMembership,
    PlayerCommand,
    PlayerDecision,
    PlayerState,
    Register,
    decide_player,
    evolve_player,
)
from protocol.errors import ErrorCode
from protocol.messages import CommandId, HuntId, PlayerId

ME = PlayerId("pme")
T0 = 1_700_000_000_000
H1, H2, H3 = HuntId("h1"), HuntId("h2"), HuntId("h3")


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
    assert d.reply == Reply(result={"name": "Ada", "hunts": []})
    assert p.s == PlayerState(ME, "Ada", "hash-1", T0 + 5)


def test_register_again_changes_nothing() -> None:
    p = registered()
    before = p.s
    d = p.send(Register("Bob", "hash-2"))
    assert d.events == ()
    assert d.reply == Reply(result={"name": "Ada", "hunts": []})
    assert p.s == before


def test_authenticate_with_the_right_hash() -> None:
    p = registered("hash-1")
    p.send(NoteMembership(H1, True, 1))
    d = p.send(Authenticate("hash-1"))
    assert d.events == ()
    assert d.reply == Reply(result={"name": "Ada", "hunts": [H1]})


@pytest.mark.parametrize("wrong", ["hash-2", "", "hash-1 ", "HASH-1"])
def test_authenticate_with_a_wrong_hash_is_unauthorized(wrong: str) -> None:
    p = registered("hash-1")
    d = p.send(Authenticate(wrong))
    assert d.events == ()
    assert d.reply.code == ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize(
    "cmd", [Authenticate("hash-1"), NoteMembership(H1, True, 1)], ids=["auth", "note"]
)
def test_an_unknown_player_is_unauthorized(cmd: PlayerCommand) -> None:
    d = decide_player(None, ME, cmd, T0)
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


def test_membership_notes_in_seq_order() -> None:
    p = registered()
    d = p.send(NoteMembership(H1, True, 1), now=T0 + 1)
    assert d.events == (MembershipChanged(T0 + 1, H1, True, 1),)
    assert d.reply.ok
    p.send(NoteMembership(H2, True, 3))
    assert p.s.member_of() == [H1, H2]
    p.send(NoteMembership(H1, False, 4))
    assert p.s.member_of() == [H2]
    p.send(NoteMembership(H1, True, 9))
    assert p.s.member_of() == [H1, H2]
    assert p.s.hunts == {H1: (True, 9), H2: (True, 3)}


def test_duplicate_and_old_membership_notes_are_ignored() -> None:
    p = registered()
    p.send(NoteMembership(H1, True, 2))
    p.send(NoteMembership(H1, False, 5))
    before = p.s
    for stale in (
        NoteMembership(H1, False, 5),  # duplicate
        NoteMembership(H1, True, 5),  # same seq, other content: still old
        NoteMembership(H1, True, 3),  # late
        NoteMembership(H1, True, 0),
    ):
        d = p.send(stale)
        assert d.events == ()
        assert d.reply.ok
    assert p.s == before
    assert p.s.member_of() == []
    # a newer one still applies, and other hunts have their own seqs
    assert p.send(NoteMembership(H1, True, 6)).events
    assert p.send(NoteMembership(H2, True, 1)).events
    assert p.s.member_of() == [H1, H2]


def test_notes_arriving_out_of_order_keep_the_newest() -> None:
    p = registered()
    p.send(NoteMembership(H3, False, 7))
    p.send(NoteMembership(H3, True, 2))  # the join, delivered late
    assert p.s.member_of() == []
    assert p.s.hunts[H3] == (False, 7)


def test_welcome_lists_the_hunts_sorted() -> None:
    p = registered()
    for h, seq in ((H3, 1), (H1, 1), (H2, 1)):
        p.send(NoteMembership(h, True, seq))
    p.send(NoteMembership(H2, False, 2))
    assert p.send(Authenticate("hash-1")).reply.result["hunts"] == [H1, H3]


def test_replaying_the_events_rebuilds_the_state() -> None:
    p = registered()
    for note in (
        NoteMembership(H1, True, 1),
        NoteMembership(H1, True, 1),
        NoteMembership(H2, True, 4),
        NoteMembership(H1, False, 3),
        NoteMembership(H2, False, 2),
    ):
        p.send(note)
    replayed: PlayerState | None = None
    for e in p.events:
        assert isinstance(e, PlayerRegistered | MembershipChanged)
        replayed = evolve_player(replayed, e)
    assert replayed == p.s
    assert len(p.events) == 4


def test_evolve_refuses_events_before_registration() -> None:
    with pytest.raises(ValueError):
        evolve_player(None, MembershipChanged(T0, H1, True, 1))


def test_organizing_a_hunt_is_noted_with_seq_1() -> None:
    hunt = hunt_id_for(ME, CommandId("c1"))
    p = registered()
    assert p.send(NoteMembership(hunt, True, 1)).events
    assert p.s.member_of() == [hunt]
