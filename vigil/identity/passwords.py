"""Password hashing: argon2id (RFC 9106) through argon2-cffi's :class:`~argon2.PasswordHasher`.

:data:`DEFAULT_PARAMETERS` are RFC 9106's second recommended option (section 4, for machines
where 2 GiB per hash is too much): argon2id, 3 passes over 64 MiB, 4 lanes, a 16-byte random salt
and a 32-byte tag. The stored value is the PHC string (``$argon2id$v=19$m=65536,t=3,p=4$...``),
so it names its own parameters: :meth:`PasswordHashing.needs_rehash` tells when they differ from
the ones in force, and a sign-in with the right password then stores a new hash.

Hashing is deliberately slow and memory-hard and argon2-cffi releases the GIL while it works:
call the ``*_async`` methods from an event loop, which run it on a worker thread.

Unknown e-mail addresses take the same path as known ones: :meth:`PasswordHashing.verify` against
a dummy hash made with the same parameters, so the answer's timing does not tell whether an
account exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True, slots=True)
class HashParameters:
    """argon2id parameters: passes, memory in KiB, lanes, salt and tag length in bytes."""

    time_cost: int = 3
    memory_cost_kib: int = 64 * 1024
    parallelism: int = 4
    salt_len: int = 16
    hash_len: int = 32


DEFAULT_PARAMETERS = HashParameters()


class PasswordHashing:
    """Hash and verify passwords with one set of :class:`HashParameters`."""

    def __init__(self, parameters: HashParameters = DEFAULT_PARAMETERS) -> None:
        self.parameters = parameters
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost_kib,
            parallelism=parameters.parallelism,
            hash_len=parameters.hash_len,
            salt_len=parameters.salt_len,
            type=Type.ID,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """The PHC string of ``password`` with a fresh random salt."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; ``None`` (no such account) is checked against
        a dummy hash, costing the same time, and is always False."""
        if stored is None:
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(self._dummy, password)
            return False
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than these."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)
