"""The HTTP API (FastAPI): routes, validation and error mapping; no Ray, no business logic.

``create_api()`` returns the app; whoever serves it (the Serve ingress replica, the uvicorn
baseline, a test) puts a :class:`~vigil.service.VigilService` on ``app.state.service`` first.
Every error is JSON ``{"error": code, "detail": reason}`` with a 4xx status; a 5xx means a bug.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil import __version__, metrics
from vigil.db.engine import session_scope
from vigil.db.migrate import head_revision
from vigil.db.models import (
    Account,
    Alert,
    BlacklistEntry,
    Decision,
    Device,
    KycSubmission,
    Merchant,
    ReviewCase,
    Transaction,
    User,
)
from vigil.errors import InvalidRequest, PayloadTooLarge, VigilError
from vigil.gateway import sse
from vigil.gateway.auth import Principal, require_role
from vigil.gateway.customer import customer_router
from vigil.gateway.ratelimit import rate_limited
from vigil.metrics import METRICS_CONTENT_TYPE, render_metrics
from vigil.monitoring.alerts import apply_notification
from vigil.schemas import (
    AccountCreate,
    AlertmanagerWebhook,
    BlacklistCreate,
    Cursor,
    DeviceCreate,
    Id,
    MerchantCreate,
    OperatorAlertsResult,
    ScreenResult,
    Text,
    TransactionCreate,
    UserCreate,
)
from vigil.service import VigilService

log = logging.getLogger("vigil.gateway.api")
access_log = logging.getLogger("vigil.access")

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


class RequestLog:
    """ASGI middleware: a request id on every answer (``x-request-id``: the caller's, or a new
    one) and one structured log line per request on the ``vigil.access`` logger at INFO.

    The line is JSON: ``request_id``, ``method``, ``path``, ``status``, ``ms`` (to the last byte
    sent), ``client`` (the API key's name once authenticated, else null). With the logger above
    INFO (the benchmark, Serve at WARNING) it costs one level check per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")  # set by the router on a match: a template, never raw ids
            metrics.HTTP_SECONDS.labels(
                scope.get("method", ""), getattr(route, "path", "unmatched"), f"{status // 100}xx"
            ).observe(time.perf_counter() - started)
            if access_log.isEnabledFor(logging.INFO):
                principal = scope["state"].get("principal")
                access_log.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "status": status,
                            "ms": round((time.perf_counter() - started) * 1000.0, 2),
                            "client": getattr(principal, "name", None),
                        },
                        separators=(",", ":"),
                    )
                )


class ScreenFastPath:
    """ASGI middleware: ``POST /v1/transactions`` without FastAPI's per-request machinery, when
    the request is well-formed; anything else goes through the FastAPI route unchanged.

    The transaction route is the hot path, and under load a large share of the Ingress's GIL
    time went to the FastAPI app's per-request work: routing, dependency solving, validation,
    the response-model round trip (py-spy ``--gil``; docs/serving.md). Here, a request
    with a JSON body, a valid client key, a body that validates and tokens left in its bucket is
    authenticated, rate-limited and validated by the same functions the route's dependencies
    use, screened by the same service call, and answered with the same JSON. Any other request (a 401/403/422/429 in the making, another
    content type) is handed, body and all, to the FastAPI app, which answers it exactly as it
    would without this middleware: the error paths are FastAPI's own, by construction. It sits
    inside :class:`RequestLog` and :class:`BodyLimit`, so request ids, access logs, HTTP metrics
    and the 413 are theirs too. ``tests/unit/test_api.py`` runs every API test with and without it
    and compares the answers of both.
    """

    path = "/v1/transactions"

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Callable[[Request], Awaitable[Principal]],
        spend: Callable[[Request, Principal], Awaitable[Principal]],
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.spend = spend
        self._route: Any = None
        self._answered = metrics.SCREEN_PATH.labels("fast_path")
        self._passed_on = metrics.SCREEN_PATH.labels("route")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        request = Request(scope, replay)
        answer = None if messages[-1]["type"] != "http.request" else await self._screen(request, body)
        if answer is None:
            self._passed_on.inc()
            await self.app(scope, replay, send)
            return
        self._answered.inc()
        if self._route is None:
            self._route = next(
                (r for r in scope["app"].routes if getattr(r, "path", None) == self.path),
                None,
            )
        scope["route"] = self._route  # RequestLog labels its metric with the route's path
        await answer(scope, replay, send)

    async def _screen(self, request: Request, body: bytes) -> Response | None:
        """The answer to a well-formed request, or ``None`` to let the FastAPI route answer."""
        content_type = request.headers.get("content-type")
        if content_type is None or content_type.split(";")[0].strip().lower() != "application/json":
            return None  # FastAPI reads a body without a JSON content type as bytes: a 422
        try:
            principal = await self.authenticate(request)
            data = TransactionCreate.model_validate(json.loads(body))
            await self.spend(request, principal)
        except (VigilError, ValueError, RecursionError):  # json's and pydantic's are ValueErrors
            return None
        service = await get_service(request)
        try:
            result = await service.screen(data, received_at=datetime.now(UTC))
        except VigilError as exc:  # stored or refused by now: answered here, not run twice
            return error_response(exc)
        return Response(
            result.model_dump_json(),
            status_code=200 if result.replayed else 201,
            media_type="application/json",
        )


def error_response(exc: VigilError) -> JSONResponse:
    """A :class:`VigilError` as the API answers it: ``{"error", "detail"}`` and its headers."""
    return JSONResponse(
        {"error": exc.code, "detail": exc.message},
        status_code=exc.status,
        headers=getattr(exc, "headers", None),  # WWW-Authenticate on 401, Retry-After on 429
    )


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


async def get_service(request: Request) -> VigilService:  # async: FastAPI runs a sync one on a thread
    service: VigilService | None = getattr(request.app.state, "service", None) or _process_service
    if service is None:
        raise RuntimeError("no VigilService installed: call install_service() when the server starts")
    return service


Service = Annotated[VigilService, Depends(get_service)]
#: Who may call what. Clients submit transactions; analysts work the review queue and the
#: blacklist; admins may do everything, including creating entities.
_client_role = require_role("client", "admin")
_client_spend = rate_limited(_client_role)
Client = Annotated[Principal, Depends(_client_spend)]
Reader = Annotated[Principal, Depends(require_role("client", "analyst", "admin"))]
Analyst = Annotated[Principal, Depends(require_role("analyst", "admin"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
#: Alertmanager's webhook: a key of its own (role ``operator``) or an admin key.
Operator = Annotated[Principal, Depends(require_role("operator", "admin"))]

MAX_SELFIE_FRAMES = 8
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_KYC_BODY_BYTES = (MAX_SELFIE_FRAMES + 1) * MAX_UPLOAD_BYTES
#: An Alertmanager notification carries every alert of its group, annotations included.
MAX_ALERTMANAGER_BODY_BYTES = 1024 * 1024


async def _read_upload(upload: UploadFile, field: str) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"{field}: over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    if not data:
        raise InvalidRequest(f"{field}: empty file")
    return data


class TransactionView(BaseModel):
    transaction: Transaction
    decision: Decision | None


class ReviewItem(BaseModel):
    case: ReviewCase
    transaction: Transaction
    decision: Decision


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["fraud", "legit"]
    notes: Text | None = Field(default=None, max_length=2000)


def create_api(*, screen_fast_path: bool = True) -> FastAPI:
    """Build the FastAPI application with every route and error handler.

    ``screen_fast_path``: answer well-formed ``POST /v1/transactions`` requests through
    :class:`ScreenFastPath` (the answers are the same either way; the tests check both)."""
    api = FastAPI(
        title="Vigil",
        version=__version__,
        description='Real-time fraud screening and KYC. Errors are JSON `{"error": code, "detail": reason}`.',
        docs_url="/docs",
        openapi_url="/openapi.json",
    )

    if screen_fast_path:
        api.add_middleware(ScreenFastPath, authenticate=_client_role, spend=_client_spend)
    api.add_middleware(
        BodyLimit,
        max_bytes=MAX_BODY_BYTES,
        overrides={"/v1/kyc/": MAX_KYC_BODY_BYTES, "/v1/ops/alertmanager": MAX_ALERTMANAGER_BODY_BYTES},
    )
    api.add_middleware(RequestLog)  # added last = outermost: sees every answer, 413s included

    @api.exception_handler(VigilError)
    async def _vigil_error(request: Request, exc: VigilError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own 4xx (an undecodable body, an unknown route, a wrong method) in our shape
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

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

    @api.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @api.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: the database answers, its schema is this code's, every component can work",
    )
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
        if revision != (head := head_revision()):
            return JSONResponse(
                {
                    "status": "unavailable",
                    "detail": f"database schema is at {revision}, this code needs {head}: "
                    "run `vigil db upgrade`",
                },
                status_code=503,
            )
        if service.unready:
            detail = "; ".join(f"{name}: {reason}" for name, reason in sorted(service.unready.items()))
            return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ready", "schema_revision": revision})

    @api.post("/v1/users", status_code=201, tags=["entities"], response_model=User)
    async def create_user(body: UserCreate, service: Service, _: Admin) -> User:
        return await service.create_user(body)

    @api.post("/v1/accounts", status_code=201, tags=["entities"], response_model=Account)
    async def create_account(body: AccountCreate, service: Service, _: Admin) -> Account:
        return await service.create_account(body)

    @api.post("/v1/merchants", status_code=201, tags=["entities"], response_model=Merchant)
    async def create_merchant(body: MerchantCreate, service: Service, _: Admin) -> Merchant:
        return await service.create_merchant(body)

    @api.post("/v1/devices", status_code=201, tags=["entities"], response_model=Device)
    async def create_device(body: DeviceCreate, service: Service, _: Admin) -> Device:
        return await service.create_device(body)

    @api.post(
        "/v1/transactions",
        status_code=201,
        tags=["transactions"],
        response_model=ScreenResult,
        summary="Screen a transaction: approve, review or block, with reason codes",
        responses={200: {"description": "A retry: the stored decision for this idempotency key"}},
    )
    async def submit_transaction(
        body: TransactionCreate, service: Service, response: Response, _: Client
    ) -> ScreenResult:
        result = await service.screen(body, received_at=datetime.now(UTC))
        if result.replayed:
            response.status_code = 200
        return result

    @api.get("/v1/transactions/{transaction_id}", tags=["transactions"], response_model=TransactionView)
    async def get_transaction(transaction_id: Id, service: Service, _: Reader) -> TransactionView:
        tx, decision = await service.transaction_with_decision(transaction_id)
        return TransactionView(transaction=tx, decision=decision)

    @api.get("/v1/users/{user_id}/transactions", tags=["transactions"], response_model=list[Transaction])
    async def user_history(
        user_id: Id,
        service: Service,
        _: Reader,
        hours: Annotated[int, Query(ge=1, le=24 * 366)] = 24 * 30,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[Transaction]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        return list(await service.user_transactions(user_id, since=since, limit=limit))

    @api.get("/v1/review", tags=["review"], response_model=list[ReviewItem], summary="The review queue")
    async def review_queue(
        service: Service,
        _: Analyst,
        status: Annotated[Literal["open", "claimed", "resolved"] | None, Query()] = "open",
        after_id: Annotated[Cursor, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[ReviewItem]:
        rows = await service.review_cases(status=status, limit=limit, after_id=after_id)
        return [ReviewItem(case=case, transaction=tx, decision=decision) for case, tx, decision in rows]

    @api.post("/v1/review/{case_id}/claim", tags=["review"], response_model=ReviewCase)
    async def claim(case_id: Id, service: Service, analyst: Analyst) -> ReviewCase:
        return await service.claim_case(case_id, analyst=analyst.name)

    @api.post("/v1/review/{case_id}/resolve", tags=["review"], response_model=ReviewCase)
    async def resolve(case_id: Id, body: Resolution, service: Service, analyst: Analyst) -> ReviewCase:
        """Close the case; the verdict becomes the transaction's fraud label (source ``analyst``)."""
        return await service.resolve_case(
            case_id, analyst=analyst.name, resolution=body.resolution, notes=body.notes
        )

    @api.get("/v1/blacklist", tags=["blacklist"], response_model=list[BlacklistEntry])
    async def list_blacklist(
        service: Service,
        _: Analyst,
        active: Annotated[
            bool | None, Query(description="only entries matching now, or only ended ones")
        ] = None,
        after_id: Annotated[Cursor, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[BlacklistEntry]:
        """Entries by id, ``limit`` at a time (pass the last id as ``after_id`` for the next page);
        ended entries stay listed (see ``DELETE``)."""
        return list(await service.blacklist(active=active, after_id=after_id, limit=limit))

    @api.post("/v1/blacklist", status_code=201, tags=["blacklist"], response_model=BlacklistEntry)
    async def add_blacklist(body: BlacklistCreate, service: Service, analyst: Analyst) -> BlacklistEntry:
        return await service.add_blacklist_entry(body, added_by=analyst.name)

    @api.delete("/v1/blacklist/{entry_id}", tags=["blacklist"], response_model=BlacklistEntry)
    async def remove_blacklist(entry_id: Id, service: Service, admin: Admin) -> BlacklistEntry:
        """End the entry now (it stays listed, with ``expires_at`` and ``removed_by``)."""
        return await service.remove_blacklist_entry(entry_id, removed_by=admin.name)

    @api.get("/v1/alerts", tags=["alerts"], response_model=list[Alert])
    async def alerts(
        service: Service,
        _: Reader,
        user_id: Annotated[Id | None, Query()] = None,
        after_id: Annotated[Cursor, Query()] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[Alert]:
        return list(await service.alerts(user_id=user_id, after_id=after_id, limit=limit))

    @api.get(
        "/v1/alerts/stream",
        tags=["alerts"],
        summary="Live alerts as Server-Sent Events (one `alert` event per row, id = alert id)",
        response_class=StreamingResponse,
    )
    async def alert_stream(
        request: Request,
        service: Service,
        _: Reader,
        user_id: Annotated[Id | None, Query()] = None,
        after_id: Annotated[Cursor, Query()] = 0,
        max_seconds: Annotated[float, Query(gt=0, le=3600)] = 300,
        last_event_id: Annotated[
            Cursor | None, Header(description="the last alert id received: resume after it (SSE)")
        ] = None,
    ) -> StreamingResponse:
        """Every user's alerts, or one user's (``user_id``); resume with ``after_id`` or Last-Event-ID."""
        last = after_id if last_event_id is None else last_event_id
        return sse.alert_stream(request, service, user_id=user_id, after_id=last, max_seconds=max_seconds)

    @api.post(
        "/v1/kyc/submissions",
        status_code=201,
        tags=["kyc"],
        response_model=KycSubmission,
        summary="Verify an identity: selfie frames (liveness, face match) and a document photo",
    )
    async def submit_kyc(
        service: Service,
        _: Client,
        user_id: Annotated[Id, Form()],
        document: Annotated[UploadFile, File(description="Photo of the passport, ID card or licence")],
        selfie: Annotated[list[UploadFile], File(description=f"1-{MAX_SELFIE_FRAMES} selfie frames")],
    ) -> KycSubmission:
        if not 1 <= len(selfie) <= MAX_SELFIE_FRAMES:
            raise InvalidRequest(f"send 1 to {MAX_SELFIE_FRAMES} selfie frames, got {len(selfie)}")
        frames = [await _read_upload(f, f"selfie[{i}]") for i, f in enumerate(selfie)]
        return await service.submit_kyc(
            user_id, selfie_frames=frames, document=await _read_upload(document, "document")
        )

    @api.get("/v1/kyc/submissions/{submission_id}", tags=["kyc"], response_model=KycSubmission)
    async def kyc_status(submission_id: Id, service: Service, _: Reader) -> KycSubmission:
        return await service.kyc_submission(submission_id)

    @api.post(
        "/v1/ops/alertmanager",
        tags=["ops"],
        response_model=OperatorAlertsResult,
        summary="Alertmanager's webhook: firing alerts become operator alerts in the feed, resolved ones close",
    )
    async def alertmanager(body: AlertmanagerWebhook, service: Service, _: Operator) -> OperatorAlertsResult:
        """Takes Alertmanager's webhook payload (version 4). Idempotent: an incident (fingerprint
        and start time) is stored once however often it is notified, and resolved once."""
        async with session_scope(service.sessions) as session:
            return await apply_notification(session, payload=body, now=datetime.now(UTC))

    api.include_router(customer_router(get_service))  # /v1/auth/*, /v1/me/*: customer tokens

    @api.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(render_metrics(), media_type=METRICS_CONTENT_TYPE)

    return api
