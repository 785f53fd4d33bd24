"""Domain errors. Each carries the HTTP status the ingress answers with and a stable code."""

from __future__ import annotations


class VigilError(Exception):
    """Base of Vigil's expected failures: bad input or a state conflict, never a bug."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: Extra response headers (Retry-After, WWW-Authenticate).
        self.headers: dict[str, str] | None = None


class NotFound(VigilError):
    status = 404
    code = "not_found"


class UnknownReference(VigilError):
    """The request names a row (user, account, merchant, device) that does not exist."""

    status = 422
    code = "unknown_reference"


class InvalidRequest(VigilError):
    status = 422
    code = "invalid_request"


class Conflict(VigilError):
    status = 409
    code = "conflict"


class DuplicateIdempotencyKey(Conflict):
    """A transaction with this idempotency key exists already (``transaction_id`` says which)."""

    code = "duplicate_idempotency_key"

    def __init__(self, key: str, transaction_id: int) -> None:
        super().__init__(f"idempotency key {key!r} was already used by transaction {transaction_id}")
        self.key = key
        self.transaction_id = transaction_id


class ServiceUnavailable(VigilError):
    status = 503
    code = "unavailable"


class PayloadTooLarge(VigilError):
    status = 413
    code = "payload_too_large"
