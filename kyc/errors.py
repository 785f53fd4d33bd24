"""The KYC library's exceptions: unusable input (a 4xx), and models it cannot start without."""

from __future__ import annotations

from pathlib import Path


class InvalidImage(ValueError):
    """The bytes are not a usable image (empty, corrupt, not an image, too large).

    ``reason`` is a short human-readable explanation; the HTTP layer maps this to a 4xx response.
    Bad *photos* (no face, blurred, ...) are not errors: they are outcomes in the result.
    """

    def __init__(self, reason: str, *, field: str = "image") -> None:
        super().__init__(f"{field}: {reason}")
        self.reason = reason
        self.field = field


class ModelsUnavailable(RuntimeError):
    """A model the KYC engine needs is missing, unreadable or corrupt: the engine does not start.

    ``path`` is the offending file (or folder); the message says what is wrong with it and how to
    fix it. There is no degraded mode: without its models the engine cannot tell a live face from
    a photo of one, so it refuses to run rather than pass submissions it never checked.
    """

    def __init__(self, reason: str, *, path: Path) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
