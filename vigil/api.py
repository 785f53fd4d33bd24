"""The HTTP API (FastAPI): routes, validation and error mapping; no Ray, no business logic.

``create_api()`` returns the app; whoever serves it (the Serve ingress replica, the uvicorn
baseline, a test) puts a :class:`~vigil.service.VigilService` on ``app.state.service`` first.
Every error is JSON ``{"error": code, "detail": reason}`` with a 4xx status; a 5xx means a bug.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil import __version__
from vigil.db.models import Account, Device, Merchant, Transaction, User
from vigil.errors import VigilError
from vigil.schemas import AccountCreate, DeviceCreate, MerchantCreate, TransactionCreate, UserCreate
from vigil.service import VigilService

log = logging.getLogger("vigil.api")

#: Largest request body accepted; KYC uploads have their own, larger limit on their route.
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """ASGI middleware answering 413 to a body over the limit, before the route reads it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}

    def _limit(self, path: str) -> int:
        for prefix, limit in self.overrides.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, limit)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    response = JSONResponse(
        {"error": "payload_too_large", "detail": f"request body over {limit} bytes"}, status_code=413
    )
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


_process_service: VigilService | None = None


def install_service(api: FastAPI, service: VigilService) -> None:
    """Make ``service`` the one the routes use.

    Also kept per process: Ray Serve serves a copy of the FastAPI app (the one in the replica
    is not the object the ingress class sees), and a replica process holds exactly one ingress.
    """
    global _process_service
    api.state.service = service
    _process_service = service


def get_service(request: Request) -> VigilService:
    service: VigilService | None = getattr(request.app.state, "service", None) or _process_service
    if service is None:
        raise RuntimeError("no VigilService installed: call install_service() when the server starts")
    return service


Service = Annotated[VigilService, Depends(get_service)]


def create_api() -> FastAPI:
    """Build the FastAPI application with every route and error handler."""
    api = FastAPI(
        title="Vigil",
        version=__version__,
        description='Real-time fraud screening and KYC. Errors are JSON `{"error": code, "detail": reason}`.',
        docs_url="/docs",
        openapi_url="/openapi.json",
    )

    api.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @api.exception_handler(VigilError)
    async def _vigil_error(request: Request, exc: VigilError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.message}, status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return JSONResponse(
            {"error": "validation_error", "detail": reason, "errors": errors}, status_code=422
        )

    @api.middleware("http")
    async def _request_id(request: Request, call_next: Any) -> Any:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        return response

    @api.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @api.get("/readyz", tags=["ops"], summary="Readiness: the database answers and is migrated")
    async def readyz(service: Service) -> JSONResponse:
        try:
            revision = await service.ping_database()
        except Exception as exc:  # the point of this route is to report, not raise
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        if revision is None:
            return JSONResponse(
                {"status": "unavailable", "detail": "database not migrated: run `vigil db upgrade`"},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "schema_revision": revision})

    @api.post("/v1/users", status_code=201, tags=["entities"], response_model=User)
    async def create_user(body: UserCreate, service: Service) -> User:
        return await service.create_user(body)

    @api.post("/v1/accounts", status_code=201, tags=["entities"], response_model=Account)
    async def create_account(body: AccountCreate, service: Service) -> Account:
        return await service.create_account(body)

    @api.post("/v1/merchants", status_code=201, tags=["entities"], response_model=Merchant)
    async def create_merchant(body: MerchantCreate, service: Service) -> Merchant:
        return await service.create_merchant(body)

    @api.post("/v1/devices", status_code=201, tags=["entities"], response_model=Device)
    async def create_device(body: DeviceCreate, service: Service) -> Device:
        return await service.create_device(body)

    @api.post("/v1/transactions", status_code=201, tags=["transactions"], response_model=Transaction)
    async def submit_transaction(body: TransactionCreate, service: Service) -> Transaction:
        return await service.record_transaction(body, received_at=datetime.now(UTC))

    @api.get("/v1/transactions/{transaction_id}", tags=["transactions"], response_model=Transaction)
    async def get_transaction(transaction_id: int, service: Service) -> Transaction:
        return await service.get_transaction(transaction_id)

    @api.get("/v1/users/{user_id}/transactions", tags=["transactions"], response_model=list[Transaction])
    async def user_history(
        user_id: int,
        service: Service,
        hours: Annotated[int, Query(ge=1, le=24 * 366)] = 24 * 30,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[Transaction]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        return list(await service.user_transactions(user_id, since=since, limit=limit))

    return api
