"""Throwaway PostgreSQL and Redis servers for the integration tier.

``tests/integration/conftest.py`` starts one when the configured server does not answer, so
``make test`` needs the Debian packages ``postgresql`` and ``redis-server`` installed, not running.
Each server lives in a temporary directory of its own, listens on a free port on 127.0.0.1 only
(PostgreSQL's unix socket is in that directory too) with trust authentication and no durability,
and is gone, with its directory, after :meth:`Throwaway.stop`.

PostgreSQL refuses to run as root: under euid 0 its binaries run as the ``postgres`` user, which
then owns the temporary directory.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.infra.ports import free_port_pair

#: Where Debian installs each PostgreSQL major version's server binaries (not on ``PATH``).
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The Debian package that ships each binary this module runs.
DEBIAN_PACKAGE = {"initdb": "postgresql", "postgres": "postgresql", "redis-server": "redis-server"}
#: The user PostgreSQL runs as when the tests run as root.
POSTGRES_USER = "postgres"
HOST = "127.0.0.1"


class ServiceUnavailable(RuntimeError):
    """A throwaway server cannot be started: a binary or the ``postgres`` user is missing, or the
    server did not come up. The message says which, and what to install."""


@dataclass
class Throwaway:
    """A server started here: ``url`` reaches it; :meth:`stop` ends it and removes ``directory``
    (its data, socket and log)."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    directory: Path
    stop_signal: int

    def stop(self, timeout: float = 30.0) -> None:
        """End the server (its own shutdown first, SIGKILL after ``timeout`` seconds) and delete its
        directory. Safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        shutil.rmtree(self.directory, ignore_errors=True)


def _version(path: str) -> int:
    name = Path(path).parents[1].name  # /usr/lib/postgresql/<version>/bin/<binary>
    return int(name) if name.isdigit() else 0


def find_binary(name: str) -> str:
    """The path of ``name``: for a PostgreSQL binary the newest installed version's copy, else the
    one on ``PATH``. Raises :class:`ServiceUnavailable` naming the binary and its Debian package."""
    package = DEBIAN_PACKAGE.get(name, name)
    candidates = (
        sorted(glob.glob(os.path.join(POSTGRES_BIN_GLOB, name)), key=_version)
        if package == "postgresql"
        else []
    )
    found = candidates[-1] if candidates else shutil.which(name)
    if found is None:
        places = f"{POSTGRES_BIN_GLOB} and PATH" if package == "postgresql" else "PATH"
        raise ServiceUnavailable(
            f"{name} not found (looked in {places}): install the Debian package {package!r}"
        )
    return found


def _postgres_ids() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: the ``postgres`` user's under root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise ServiceUnavailable(
            f"running as root, and there is no {POSTGRES_USER!r} user to run PostgreSQL as: "
            "install the Debian package 'postgresql' (it creates that user)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _as_user(ids: tuple[int, int] | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``ids`` (uid, gid), without root's groups."""
    return {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with status {process.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} did not become ready within {timeout:.0f} s:\n{_tail(log)}")


def _start(
    name: str,
    command: list[str],
    directory: Path,
    ids: tuple[int, int] | None,
    stop_signal: int,
) -> tuple[subprocess.Popen[bytes], Path]:
    log = directory / f"{name}.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C at the terminal reaches pytest, which stops it in order.
            start_new_session=True,
            **_as_user(ids),
        )
    return process, log


def start_postgres(*, timeout: float = 60.0) -> Throwaway:
    """A new PostgreSQL cluster: superuser ``postgres``, trust authentication, fsync off. Its
    ``url`` is ``postgresql://postgres@127.0.0.1:<port>/postgres``."""
    initdb, postgres = find_binary("initdb"), find_binary("postgres")
    ids = _postgres_ids()
    directory = Path(tempfile.mkdtemp(prefix="vigil-test-postgres-"))
    try:
        if ids:
            os.chown(directory, *ids)
        data = directory / "data"
        init = subprocess.run(
            [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **_as_user(ids),
        )
        if init.returncode != 0:
            raise ServiceUnavailable(f"{initdb} failed with status {init.returncode}:\n{init.stderr}")
        port = free_port_pair()
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(directory),
            "lc_messages": "C",  # the readiness line below is matched in English
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        command = [postgres, "-D", str(data), "-p", str(port)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        process, log = _start("postgres", command, directory, ids, signal.SIGINT)  # SIGINT: fast shutdown
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server = Throwaway(
        "postgres", f"postgresql://postgres@{HOST}:{port}/postgres", process, directory, signal.SIGINT
    )
    atexit.register(server.stop)  # also when the session ends without its teardown
    try:
        _wait_until(
            lambda: "ready to accept connections" in log.read_text(errors="replace"),
            process,
            log,
            f"PostgreSQL ({postgres}) on {HOST}:{port}",
            timeout,
        )
    except BaseException:
        server.stop()
        raise
    return server


def _redis_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(64).startswith(b"+PONG")
    return False


def start_redis(*, timeout: float = 30.0, db: int = 15) -> Throwaway:
    """A new Redis with no persistence; its ``url`` is ``redis://127.0.0.1:<port>/<db>``."""
    binary = find_binary("redis-server")
    directory = Path(tempfile.mkdtemp(prefix="vigil-test-redis-"))
    port = free_port_pair()
    command = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    command += ["--dir", str(directory), "--daemonize", "no"]
    try:
        process, log = _start("redis", command, directory, None, signal.SIGTERM)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    server = Throwaway("redis", f"redis://{HOST}:{port}/{db}", process, directory, signal.SIGTERM)
    atexit.register(server.stop)
    try:
        _wait_until(lambda: _redis_answers(port), process, log, f"Redis ({binary}) on {HOST}:{port}", timeout)
    except BaseException:
        server.stop()
        raise
    return server
