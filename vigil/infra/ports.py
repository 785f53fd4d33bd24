"""Picking free TCP ports for a local system under test (benchmarks, integration tests)."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port_pair(host: str = "127.0.0.1", *, start: int = 20000, attempts: int = 200) -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` are free on ``host`` (``vigil up`` serves the
    API on ``p`` and moves Serve's proxy to ``p + 1``), chosen *below* the kernel's ephemeral
    range. A port the kernel hands out (``bind(0)``) lies inside that range, where a local Ray's
    dozens of outgoing connections can take it before the server binds it: seen here as Serve's
    ``NoAvailablePortError`` and a failed deploy."""
    low, _ = _ephemeral_range()
    candidates = list(range(start, max(start + 1, low - 1)))
    random.shuffle(candidates)
    for port in candidates[:attempts]:
        with contextlib.ExitStack() as stack:
            try:
                for p in (port, port + 1):
                    s = stack.enter_context(socket.socket())
                    s.bind((host, p))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no two free consecutive ports on {host} below {low} after {attempts} tries")
