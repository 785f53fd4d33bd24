"""The customer's routes: ``/v1/auth/*`` (sign-up, sign-in, refresh, sign-out) and ``/v1/me/*``.

Every ``/v1/me`` route takes its user from the access token (``Authorization: Bearer``, see
:mod:`vigil.identity.tokens`) and from nowhere else: no path, query or body field names a user,
and an id of someone else's row (an account) answers 404 as a missing one does. API keys, partner
or staff, are not access tokens: they get 401 here, and access tokens get 401 on the staff routes.

Failed sign-ins answer 401 ``invalid_credentials``; too many of them 423 ``account_locked`` (per
account) or 429 ``too_many_attempts`` (per IP address), both with ``Retry-After``
(:mod:`vigil.identity.throttle`). The client's IP address is the peer's address as the server
sees it (behind a proxy, the proxy's; forwarded headers are not trusted).
"""

# No `from __future__ import annotations`: the routes' annotations name `Service` and `Customer`,
# which are local to customer_router(), and FastAPI resolves string annotations in module scope.
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from vigil.db.engine import session_scope
from vigil.db.models import Alert
from vigil.gateway import sse
from vigil.gateway.ratelimit import RateLimited, current_rate_limiter
from vigil.identity import me
from vigil.identity.schemas import RefreshRequest, SignIn, SignOut, SignUp, TokenPair
from vigil.identity.service import CustomerPrincipal
from vigil.identity.tokens import InvalidToken
from vigil.schemas import AwareDatetime, Cursor, Id
from vigil.service import VigilService


class SignedOut(BaseModel):
    sessions_ended: int


def _ip(request: Request) -> str:
    return request.client.host[:45] if request.client is not None else "unknown"


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def customer_router(get_service: Callable[[Request], Awaitable[VigilService]]) -> APIRouter:
    """The routes, with ``get_service`` the API's dependency that finds the installed service."""
    router = APIRouter()
    Service = Annotated[VigilService, Depends(get_service)]

    async def authenticate(request: Request, service: Service) -> CustomerPrincipal:
        token = _bearer(request)
        if token is None:
            raise InvalidToken("missing access token: send Authorization: Bearer <access token>")
        principal = await service.identity.authenticate(token)
        request.state.principal = principal  # the access log names the customer
        return principal

    Customer = Annotated[CustomerPrincipal, Depends(authenticate)]

    # ---------------------------------------------------------------------------------------
    # /v1/auth
    # ---------------------------------------------------------------------------------------

    @router.post(
        "/v1/auth/signup",
        status_code=201,
        tags=["customer auth"],
        response_model=TokenPair,
        summary="Create a customer account and sign in on this device",
        responses={409: {"description": "the e-mail address has an account"}},
    )
    async def signup(body: SignUp, request: Request, service: Service) -> TokenPair:
        return await service.identity.sign_up(body, ip=_ip(request))

    @router.post(
        "/v1/auth/signin",
        tags=["customer auth"],
        response_model=TokenPair,
        summary="Sign in: e-mail, password and this device's fingerprint",
        responses={
            401: {"description": "wrong e-mail address or password"},
            423: {"description": "too many failures for this account: locked, see Retry-After"},
            429: {"description": "too many failures from this address: see Retry-After"},
        },
    )
    async def signin(body: SignIn, request: Request, service: Service) -> TokenPair:
        """A device the customer has not signed in on before is registered, and raises a
        ``new_device`` alert when they had another one."""
        return await service.identity.sign_in(body, ip=_ip(request))

    @router.post(
        "/v1/auth/refresh",
        tags=["customer auth"],
        response_model=TokenPair,
        summary="Trade a refresh token for a new token pair (each refresh token works once)",
    )
    async def refresh(body: RefreshRequest, service: Service) -> TokenPair:
        """Presenting a refresh token that was already traded ends its session: 401 for it and
        for every token of that session."""
        return await service.identity.refresh(body.refresh_token)

    @router.post("/v1/auth/signout", tags=["customer auth"], response_model=SignedOut)
    async def signout(customer: Customer, service: Service, body: SignOut | None = None) -> SignedOut:
        """End this session (its access and refresh tokens stop working at once), or every
        session of the customer with ``all_devices``."""
        ended = await service.identity.sign_out(customer, all_devices=body is not None and body.all_devices)
        return SignedOut(sessions_ended=ended)

    # ---------------------------------------------------------------------------------------
    # /v1/me
    # ---------------------------------------------------------------------------------------

    @router.get("/v1/me", tags=["customer"], response_model=me.Profile, summary="My profile and KYC status")
    async def profile(customer: Customer, service: Service) -> me.Profile:
        async with service.sessions() as s:
            return await me.profile(s, user_id=customer.user_id)

    @router.get("/v1/me/accounts", tags=["customer"], response_model=list[me.MyAccount])
    async def accounts(customer: Customer, service: Service) -> list[me.MyAccount]:
        async with service.sessions() as s:
            return await me.accounts(s, user_id=customer.user_id)

    async def _freeze(
        customer: CustomerPrincipal, service: VigilService, account_id: int, frozen: bool
    ) -> me.MyAccount:
        async with session_scope(service.sessions) as s:
            return await me.set_frozen(s, user_id=customer.user_id, account_id=account_id, frozen=frozen)

    @router.post(
        "/v1/me/accounts/{account_id}/freeze",
        tags=["customer"],
        response_model=me.MyAccount,
        summary="Freeze one of my accounts: no payment leaves it until unfrozen",
    )
    async def freeze(account_id: Id, customer: Customer, service: Service) -> me.MyAccount:
        return await _freeze(customer, service, account_id, True)

    @router.post("/v1/me/accounts/{account_id}/unfreeze", tags=["customer"], response_model=me.MyAccount)
    async def unfreeze(account_id: Id, customer: Customer, service: Service) -> me.MyAccount:
        return await _freeze(customer, service, account_id, False)

    @router.get(
        "/v1/me/transactions",
        tags=["customer"],
        response_model=list[me.HistoryItem],
        summary="My transactions, newest first",
    )
    async def history(
        customer: Customer,
        service: Service,
        since: Annotated[AwareDatetime | None, Query(description="from this time on (inclusive)")] = None,
        until: Annotated[AwareDatetime | None, Query(description="before this time")] = None,
        status: Annotated[me.Status | None, Query()] = None,
        before_id: Annotated[Cursor, Query(description="the last transaction_id seen; 0 = the newest")] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[me.HistoryItem]:
        async with service.sessions() as s:
            return await me.history(
                s,
                user_id=customer.user_id,
                since=since,
                until=until,
                status=status,
                before_id=before_id,
                limit=limit,
            )

    @router.get(
        "/v1/me/analytics/spend",
        tags=["customer"],
        response_model=list[me.SpendRow],
        summary="What I spent, per merchant category or per month, per currency",
    )
    async def spend(
        customer: Customer,
        service: Service,
        by: Annotated[Literal["category", "month"], Query()] = "category",
        since: Annotated[AwareDatetime | None, Query()] = None,
        until: Annotated[AwareDatetime | None, Query()] = None,
    ) -> list[me.SpendRow]:
        async with service.sessions() as s:
            return await me.spend(s, user_id=customer.user_id, by=by, since=since, until=until)

    @router.get("/v1/me/devices", tags=["customer"], response_model=list[me.MyDevice])
    async def devices(customer: Customer, service: Service) -> list[me.MyDevice]:
        async with service.sessions() as s:
            return await me.devices(s, user_id=customer.user_id, current_device_id=customer.device_id)

    @router.get("/v1/me/alerts", tags=["customer"], response_model=list[Alert])
    async def alerts(
        customer: Customer,
        service: Service,
        after_id: Annotated[Cursor, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[Alert]:
        return list(await service.alerts(user_id=customer.user_id, after_id=after_id, limit=limit))

    @router.get(
        "/v1/me/alerts/stream",
        tags=["customer"],
        summary="My alerts live, as Server-Sent Events (one `alert` event per row, id = alert id)",
        response_class=StreamingResponse,
    )
    async def alert_stream(
        request: Request,
        customer: Customer,
        service: Service,
        after_id: Annotated[Cursor, Query()] = 0,
        max_seconds: Annotated[float, Query(gt=0, le=3600)] = 300,
        last_event_id: Annotated[
            Cursor | None, Header(description="the last alert id received: resume after it (SSE)")
        ] = None,
    ) -> StreamingResponse:
        """Only this customer's alerts (a payment held or declined, a new device). The stream
        ends when the session does (sign-out, revocation, expiry): reconnect with a fresh token."""
        last = after_id if last_event_id is None else last_event_id

        async def session_live() -> bool:
            return await service.identity.session_live(customer)

        return sse.alert_stream(
            request,
            service,
            user_id=customer.user_id,
            after_id=last,
            max_seconds=max_seconds,
            still_allowed=session_live,
        )

    @router.post(
        "/v1/me/transactions",
        status_code=201,
        tags=["customer"],
        response_model=me.SendResult,
        summary="Send money from one of my accounts: approved, held for review, or declined",
        responses={200: {"description": "A retry: the stored decision for this idempotency key"}},
    )
    async def send_money(
        body: me.SendMoney, request: Request, response: Response, customer: Customer, service: Service
    ) -> me.SendResult:
        """Screened like any transaction, as this customer on this session's device; the answer
        says what happened in plain words (no scores or rules)."""
        allowed, retry_after = await current_rate_limiter(request).allow(customer.name)
        if not allowed:
            raise RateLimited(retry_after)
        async with service.sessions() as s:
            tx = await me.payment_of(
                s, user_id=customer.user_id, device_id=customer.device_id, ip=_client_ip(request), body=body
            )
        result = await service.screen(tx, received_at=datetime.now(UTC))
        if result.replayed:
            response.status_code = 200
        return me.explain(result, user_id=customer.user_id)

    return router


def _client_ip(request: Request) -> str | None:
    """The peer's address when it is an IP address (the transaction's ``ip`` field), else None."""
    host = request.client.host if request.client is not None else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None
