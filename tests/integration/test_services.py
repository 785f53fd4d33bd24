"""The throwaway PostgreSQL and Redis servers (``services.py``) that the integration fixtures
start when the configured ones do not answer."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from pathlib import Path

import asyncpg
import pytest
import redis
import services

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_a_throwaway_postgres_serves_on_loopback_and_leaves_nothing_behind() -> None:
    server = services.start_postgres()
    port = _port(server.url)

    async def ask() -> tuple[str, str, str]:
        conn = await asyncpg.connect(server.url, timeout=5)
        try:
            row = await conn.fetchrow(
                "SELECT current_setting('listen_addresses'), current_setting('unix_socket_directories'),"
                " current_user"
            )
            assert row is not None
            return row[0], row[1], row[2]
        finally:
            await conn.close()

    try:
        assert server.url.startswith("postgresql://postgres@127.0.0.1:")
        assert asyncio.run(ask()) == ("127.0.0.1", str(server.directory), "postgres")
        assert (server.directory / f".s.PGSQL.{port}").is_socket()
    finally:
        server.stop()
    assert server.process.returncode is not None
    assert not server.directory.exists()
    assert _refused("127.0.0.1", port)
    server.stop()  # twice is harmless


def test_a_throwaway_redis_serves_on_loopback_without_persistence_and_leaves_nothing_behind() -> None:
    server = services.start_redis()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    port = _port(server.url)
    try:
        assert server.url.startswith("redis://127.0.0.1:") and server.url.endswith("/15")
        assert client.ping()
        config = client.config_get("*")
        assert (config["bind"], config["save"], config["appendonly"]) == ("127.0.0.1", "", "no")
        assert (config["dir"], config["port"]) == (str(server.directory), str(port))
    finally:
        client.close()
        server.stop()
    assert server.process.returncode is not None
    assert not server.directory.exists()
    assert _refused("127.0.0.1", port)


@pytest.mark.parametrize(
    ("binary", "package"),
    [("initdb", "postgresql"), ("postgres", "postgresql"), ("redis-server", "redis-server")],
)
def test_a_missing_binary_is_named_with_its_debian_package(
    binary: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "POSTGRES_BIN_GLOB", str(tmp_path / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(services.ServiceUnavailable, match=f"^{binary} not found .*'{package}'$"):
        services.find_binary(binary)
    start = services.start_redis if binary == "redis-server" else services.start_postgres
    with pytest.raises(services.ServiceUnavailable, match=f"'{package}'"):
        start()


def test_the_newest_postgres_version_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    monkeypatch.setattr(services, "POSTGRES_BIN_GLOB", str(tmp_path / "*" / "bin"))
    assert services.find_binary("initdb") == str(tmp_path / "15" / "bin" / "initdb")


def test_the_fixtures_fall_back_to_throwaway_servers_when_the_configured_ones_do_not_answer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real integration conftest, pointed at ports where nothing listens."""
    closed = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed.append(s.getsockname()[1])
    monkeypatch.setenv("VIGIL_TEST_POSTGRES_URL", f"postgresql://postgres@127.0.0.1:{closed[0]}/postgres")
    monkeypatch.setenv("VIGIL_TEST_REDIS_URL", f"redis://127.0.0.1:{closed[1]}/15")
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest((HERE / "conftest.py").read_text())
    shutil.copy(HERE / "services.py", pytester.path / "services.py")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_fallback=f"""
        import asyncio

        import asyncpg
        import redis

        def test_both(postgres_url, redis_url, fresh_postgres_database):
            assert ":{closed[0]}/" not in postgres_url and ":{closed[1]}/" not in redis_url
            assert postgres_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
            assert redis.Redis.from_url(redis_url).ping()
            with fresh_postgres_database("fallback") as url:
                async def ask():
                    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
                    try:
                        return await conn.fetchval("SELECT current_database()")
                    finally:
                        await conn.close()
                assert asyncio.run(ask()).startswith("fallback_")
        """
    )
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("vigil-test-*"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--import-mode=importlib")
    result.assert_outcomes(passed=1)
    assert set(tmp.glob("vigil-test-*")) <= before  # both servers stopped, their directories gone
