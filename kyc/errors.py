"""The one exception the KYC library raises for unusable input."""

from __future__ import annotations


class InvalidImage(ValueError):
    """The bytes are not a usable image (empty, corrupt, not an image, too large).

    ``reason`` is a short human-readable explanation; the HTTP layer maps this to a 4xx response.
    Bad *photos* (no face, blurred, ...) are not errors: they are outcomes in the result.
    """

    def __init__(self, reason: str, *, field: str = "image") -> None:
        super().__init__(f"{field}: {reason}")
        self.reason = reason
        self.field = field
