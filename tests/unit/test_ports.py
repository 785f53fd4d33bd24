"""Ports for a local system under test: two free consecutive ones, outside the ephemeral range."""

from __future__ import annotations

import socket

import pytest

from vigil.infra import ports
from vigil.infra.ports import _ephemeral_range, free_port_pair


def test_a_free_pair_lies_below_the_ephemeral_range_and_both_bind() -> None:
    low, _ = _ephemeral_range()
    for _ in range(5):
        port = free_port_pair()
        assert port >= 20000 and port + 1 < low
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))


def test_a_taken_port_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_port_pair()
    # three candidates only: base (its +1 is taken), base+1 (taken), base+2
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (base + 4, base + 10))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 1))
        holder.listen()
        offered = {free_port_pair(start=base) for _ in range(10)}
    assert offered == {base + 2}
