"""Schemathesis against the live API: no request it generates gets a 5xx, on any route.

The FastAPI app of :func:`vigil.gateway.api.create_api`, wired as the Serve ingress wires it (a
:class:`~vigil.service.VigilService` on a fresh, migrated database, in-process screening, the
real KYC engine, an API key store, a rate limiter), is served by uvicorn on 127.0.0.1. The
Schemathesis CLI then runs its four phases (the schema's examples, the coverage phase's boundary
and out-of-range values, random fuzzing, stateful sequences) with the ``not_a_server_error`` check
only, once with an admin key (every route reaches its handler and the database), once without
credentials (every protected route must refuse with a 4xx before touching anything), and once
with a customer's access token (the ``/v1/me`` routes reach their handlers). The seed
and the example budget are fixed, so a run is reproducible and bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from vigil.schemas import MAX_ID

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # Ray Serve's pydantic-v1 style fields, met when deployments.kyc imports ray.serve
    pytest.mark.filterwarnings(r"ignore:Using extra keyword arguments on `Field`:DeprecationWarning"),
]

ADMIN_KEY = "adm-" + "s" * 32
#: Fixed, so a failure is reproduced by running the test again (and shown with its ``curl``).
SEED = 20261207
#: Test cases per operation and phase: the coverage phase adds its boundary values on top.
MAX_EXAMPLES = 40
ST_TIMEOUT_S = 300


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


def _st() -> Path:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        _missing(f"the Schemathesis CLI is not installed at {st} (make setup installs the dev extras)")
    return st


@pytest.fixture(scope="module")
def kyc_engine() -> Any:
    """The KYC engine the ``KycVerifier`` deployment builds, with its default models."""
    from kyc.config import KycConfig
    from kyc.errors import ModelsUnavailable
    from kyc.pipeline import KycEngine

    try:
        return KycEngine(KycConfig())
    except ModelsUnavailable as exc:  # served, KYC would be unready: /readyz and submissions a 503
        _missing(f"the KYC models: {exc}")


def _build(database_url: str, kyc_engine: Any) -> tuple[Any, Any]:
    """``(app, service)``: the production app, wired as ``deployments.ingress.Ingress`` wires it,
    with the in-process screening graph of the uvicorn baseline instead of the Ray one."""
    from deployments.kyc import result_to_dict
    from kyc.errors import InvalidImage
    from vigil.decision.local_graph import LocalGraph
    from vigil.decision.policy import DecisionPolicy
    from vigil.errors import InvalidRequest
    from vigil.events.bus import create_event_bus
    from vigil.gateway.api import create_api, install_service
    from vigil.gateway.auth import InMemoryKeyStore, install_key_store
    from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
    from vigil.service import VigilService

    async def verify(frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
        try:
            result = await asyncio.to_thread(kyc_engine.verify, frames, document, today=today)
        except InvalidImage as exc:  # as Ingress._verify_kyc maps it
            raise InvalidRequest(f"{exc.field}: {exc.reason}") from None
        return result_to_dict(result)

    api = create_api()
    service = VigilService(database_url)
    # No champion models: the rules-only mode; the routes, validation and storage are the same.
    service.attach_screening(
        LocalGraph(database_url, supervised=None, anomaly=None), DecisionPolicy(), create_event_bus(None)
    )
    service.attach_kyc(verify)
    install_service(api, service)
    keys = InMemoryKeyStore()
    keys.add("ops", "admin", ADMIN_KEY)
    install_key_store(api, keys)
    # Far above what the run sends: a 429 would stop the screening route short of its handler.
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=100_000, rate=10_000)))
    return api, service


@contextmanager
def _serving(app: Any, service: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a loopback port in a thread; yields its base URL."""
    import uvicorn

    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so (proto 0 would leave
    # Nagle on, and every answer on a kept-alive connection would wait for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no other process can take it between
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="off")
    )

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await service.close()
            await service.engine.dispose()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if errors or not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start: {errors!r}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not errors, errors


def _run_schemathesis(base_url: str, tmp_path: Path, headers: dict[str, str]) -> dict[str, Any]:
    """Run ``st`` with the four phases and ``not_a_server_error``; the JSON run report."""
    config = tmp_path / "schemathesis.toml"
    # The alert stream ends after max_seconds (up to an hour): read each one for a moment only.
    # A stream cut short by the timeout is not a failure, a 5xx answer before it is.
    config.write_text(
        "".join(
            f'[[operations]]\ninclude-path = "{path}"\nrequest-timeout = 0.25\n'
            for path in ("/v1/alerts/stream", "/v1/me/alerts/stream")
        )
    )
    report = tmp_path / "report.json"
    command = [
        str(_st()),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{base_url}/openapi.json",
        "--phases=examples,coverage,fuzzing,stateful",
        "--checks=not_a_server_error",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--generation-database=none",  # no example store carried between runs: the seed decides
        "--workers=1",
        "--request-timeout=10",
        "--report=json",
        f"--report-json-path={report}",
        "--output-truncate=false",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=ST_TIMEOUT_S, env=env, cwd=tmp_path
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis found failures (exit {done.returncode}):\n{output}"
    assert report.exists(), output
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def _unbounded_integers(document: dict[str, Any]) -> list[str]:
    """Where the OpenAPI ``document`` takes an integer from a client (a parameter, a JSON or form
    body field) without both bounds inside the BIGINT range. Random fuzzing meets an unbounded
    id's overflow only by luck; with the bounds stated, the coverage phase sends each bound
    plus one, every run."""
    components = document.get("components", {}).get("schemas", {})
    found: list[str] = []

    def walk(schema: dict[str, Any], where: str, seen: frozenset[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(components[name], where, seen | {name})
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for option in schema.get(key, []):
                walk(option, where, seen)
        for name, field in schema.get("properties", {}).items():
            walk(field, f"{where}.{name}", seen)
        if "items" in schema:
            walk(schema["items"], f"{where}[]", seen)
        if schema.get("type") == "integer":
            # float(): FastAPI writes component bounds as doubles (2**63 - 1 reads back as 2**63)
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is None or high is None or float(low) < -float(MAX_ID) or float(high) > float(MAX_ID):
                found.append(f"{where}: {schema}")

    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                walk(
                    parameter["schema"],
                    f"{method.upper()} {path} {parameter['in']}.{parameter['name']}",
                    frozenset(),
                )
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                walk(content.get("schema", {}), f"{method.upper()} {path} body({media})", frozenset())
    return found


def _seed(base_url: str) -> None:
    """Id 1 of each kind exists (a user with an account, a merchant, a device, a transaction
    held for review, hence review case 1), so the schema's examples and the coverage phase's
    lower bounds reach past the "unknown id" answers into the handlers."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        created = [
            client.post(
                "/v1/users", json={"full_name": "Ada", "country": "GB", "home_lat": 51.5, "home_lon": 0}
            ),
            client.post("/v1/accounts", json={"user_id": 1, "currency": "EUR"}),
            client.post(
                "/v1/merchants",
                json={"name": "Shop", "category": "grocery", "country": "GB", "lat": 51.5, "lon": 0},
            ),
            client.post("/v1/devices", json={"fingerprint": "seed-device", "os": "android"}),
        ]
        assert [r.status_code for r in created] == [201] * 4, [r.text for r in created]
        tx = {"user_id": 1, "account_id": 1, "merchant_id": 1, "device_id": 1, "currency": "EUR"}
        tx |= {"channel": "ecommerce", "country": "GB", "idempotency_key": "seed-0001", "amount": "5000.00"}
        screened = client.post("/v1/transactions", json=tx)
        assert screened.status_code == 201, screened.text
        assert screened.json()["outcome"] == "review", screened.text  # rules only: large amounts wait
        assert client.get("/v1/review").json()[0]["case"]["id"] == 1


def _customer_token(base_url: str) -> str:
    """A customer (user 2, with account 2) signed up through the API: their access token."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        signed_up = client.post(
            "/v1/auth/signup",
            json={
                "email": "ada@example.com",
                "password": "correct horse battery",
                "full_name": "Ada",
                "country": "GB",
                "home_lat": 51.5,
                "home_lon": 0,
                "device_fingerprint": "seed-customer-device",
                "device_name": "phone",
            },
        )
        assert signed_up.status_code == 201, signed_up.text
        account = client.post(
            "/v1/accounts",
            json={"user_id": signed_up.json()["user_id"], "currency": "EUR"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert account.status_code == 201, account.text
        return str(signed_up.json()["access_token"])


@pytest.mark.parametrize("credentials", ["admin-key", "customer-token", "no-credentials"])
def test_no_generated_request_gets_a_server_error(
    credentials: str, database_url: str, kyc_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _st()
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))  # the customer token secret is generated there
    app, service = _build(database_url, kyc_engine)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if credentials == "admin-key" else {}
    with _serving(app, service) as base_url:
        _seed(base_url)
        if credentials == "customer-token":  # the /v1/me routes reach their handlers
            headers = {"Authorization": f"Bearer {_customer_token(base_url)}"}
        document = httpx.get(f"{base_url}/openapi.json").json()
        assert _unbounded_integers(document) == []
        report = _run_schemathesis(base_url, tmp_path, headers)
    operations = report["operations"]
    # every operation of the document was generated for, and none errored (a timeout, say)
    assert (
        operations["selected"]
        == operations["tested"]
        == sum(len(item) for item in document["paths"].values())
    ), operations
    assert operations["errored"] == 0 and not report["errors"], report["errors"]
    assert {phase: v["status"] for phase, v in report["phases"].items()} == dict.fromkeys(
        ["examples", "coverage", "fuzzing", "stateful"], "success"
    ), report["phases"]
    assert report["failures"] == [] and report["test_cases"]["with_failures"] == 0
