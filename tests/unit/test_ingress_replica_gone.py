"""The Ingress's calls to other Serve replicas when the replica dies mid-call.

Found live (2026-12-07): a KycVerifier replica SIGKILLed during a submission made the Ingress
answer 500 (Serve raised ``ActorUnavailableError``); it now answers 503 with Retry-After (two
kills, live). Here fake handles raise Ray's actor errors (no Ray started), and the Ingress's own
methods are called unbound on a stand-in for the replica.
"""

from __future__ import annotations

import asyncio
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from vigil.errors import InvalidRequest, ServiceUnavailable

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Serve's pydantic fields


def _ingress_class() -> Any:
    from deployments.ingress import Ingress

    return Ingress.func_or_class


class Method:
    """``handle.method.remote(...)``: raises the next queued error, else returns ``value``."""

    def __init__(self, *errors: BaseException, value: Any = None) -> None:
        self.errors = list(errors)
        self.value = value
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> Any:
        self.calls.append(args)

        async def answer() -> Any:
            if self.errors:
                raise self.errors.pop(0)
            return self.value

        return answer()


def _verify(kyc: Method) -> Any:
    replica = SimpleNamespace(kyc=SimpleNamespace(verify=kyc))
    return asyncio.run(_ingress_class()._verify_kyc(replica, [b"selfie"], b"document", date(2026, 12, 7)))


@pytest.mark.parametrize(
    "gone", [ActorUnavailableError("Actor is unavailable.", None), ActorDiedError()], ids=type
)
def test_a_kyc_replica_gone_mid_call_is_a_503_with_retry_after(gone: BaseException) -> None:
    with pytest.raises(ServiceUnavailable) as raised:
        _verify(Method(gone))
    assert raised.value.status == 503
    assert raised.value.headers == {"Retry-After": "5"}


def test_other_kyc_failures_are_not_disguised_as_a_restart() -> None:
    from kyc.errors import InvalidImage

    assert _verify(Method(value={"status": "approved"})) == {"status": "approved"}
    with pytest.raises(InvalidRequest):
        _verify(Method(InvalidImage("not an image", field="document")))
    with pytest.raises(ZeroDivisionError):  # a bug stays a bug (a 500), not a 503
        _verify(Method(ZeroDivisionError()))
