"""The worker setup hook of a loopback Ray: it patches Serve's replica module only where a
process imports it, and the patched server binds 127.0.0.1 instead of every interface.

Each check runs in a fresh interpreter: the hook changes ``sys.meta_path`` and the module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_hook_does_not_import_serve_and_patches_the_replica_module_when_imported() -> None:
    out = _run(
        """
        import sys
        from vigil.infra.ray_local import bind_serve_replicas_to_loopback
        bind_serve_replicas_to_loopback()
        bind_serve_replicas_to_loopback()  # a second call installs nothing more
        print("serve imported by the hook:", "ray.serve._private.replica" in sys.modules)
        finders = [f for f in sys.meta_path if type(f).__name__ == "_PatchOnImport"]
        print("finders:", len(finders))

        from ray.serve._private import replica

        class Server:
            def add_insecure_port(self, address):
                print("bound:", address)
                return int(address.rsplit(":", 1)[1])

        print("port:", replica.add_port_to_grpc_server(Server(), "[::]:45123"))
        print("finders left:", sum(type(f).__name__ == "_PatchOnImport" for f in sys.meta_path))
        import inspect
        print("source readable:", "class ReplicaActor" in inspect.getsource(replica))
        """
    )
    assert out.splitlines() == [
        "serve imported by the hook: False",
        "finders: 1",
        "bound: 127.0.0.1:45123",
        "port: 45123",
        "finders left: 0",
        "source readable: True",
    ]


def test_a_module_imported_before_the_hook_is_patched_at_once() -> None:
    out = _run(
        """
        from ray.serve._private import replica
        from vigil.infra.ray_local import bind_serve_replicas_to_loopback
        before = replica.add_port_to_grpc_server
        bind_serve_replicas_to_loopback()
        print(replica.add_port_to_grpc_server is not before)
        """
    )
    assert out == "True"


_HALF_CLOSED_PORT = """
    import asyncio, socket
    from ray.serve.config import HTTPOptions

    # A listener that dies with a connection open: its end of the connection waits in FIN_WAIT
    # (then TIME_WAIT) on the port, as a killed Ingress's connections do. The dead listener was
    # made like the new one (a connection inherits its listener's options, and the kernel lets a
    # port be shared only if both sockets allow it).
    listener = socket.socket()
    if PATCHED:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()
    listener.close()

    async def app(scope, receive, send):
        pass

    async def start(start_server):
        try:
            task, server = await start_server(
                app, HTTPOptions(host="127.0.0.1", port=port), event_loop=asyncio.get_running_loop()
            )
        except RuntimeError as exc:
            return f"refused: {exc.__cause__}"
        server.should_exit = True
        await task
        return "bound"
"""


def test_serves_own_direct_ingress_socket_cannot_take_over_a_port_with_a_dead_listeners_connections() -> None:
    # What the patch below fixes, shown with Serve's unpatched function.
    out = _run(
        "    PATCHED = False\n"
        + _HALF_CLOSED_PORT
        + """
    from ray.serve._private.http_util import start_asgi_http_server
    print(asyncio.run(start(start_asgi_http_server)))
    """
    )
    assert out.startswith("refused: [Errno 98]"), out


def test_the_patched_replica_module_binds_a_port_with_a_dead_listeners_connections() -> None:
    out = _run(
        "    PATCHED = True\n"
        + _HALF_CLOSED_PORT
        + """
    from vigil.infra.ray_local import bind_serve_replicas_to_loopback
    bind_serve_replicas_to_loopback()
    from ray.serve._private import replica
    print(asyncio.run(start(replica.start_asgi_http_server)))
    """
    )
    assert out == "bound", out


def test_the_patched_replica_module_does_not_share_a_port_another_process_listens_on() -> None:
    # SO_REUSEPORT would let a second `vigil up` on the same port start and take half the
    # connections; SO_REUSEADDR alone refuses it.
    out = _run(
        """
        import asyncio, socket
        from ray.serve.config import HTTPOptions
        from vigil.infra.ray_local import bind_serve_replicas_to_loopback
        bind_serve_replicas_to_loopback()
        from ray.serve._private import replica

        async def app(scope, receive, send):
            pass

        async def main():
            options = HTTPOptions(host="127.0.0.1", port=0)
            first, server = await replica.start_asgi_http_server(
                app, options, event_loop=asyncio.get_running_loop()
            )
            while not server.started:
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            try:
                await replica.start_asgi_http_server(
                    app, HTTPOptions(host="127.0.0.1", port=port), event_loop=asyncio.get_running_loop()
                )
                outcome = "both bound"
            except RuntimeError as exc:
                outcome = f"refused: {exc.__cause__}"
            server.should_exit = True
            await first
            return outcome

        print(asyncio.run(main()))
        """
    )
    assert out.startswith("refused: [Errno 98]"), out


def test_the_patches_refuse_a_ray_version_they_were_not_written_for() -> None:
    from vigil.infra.ray_local import PATCHED_RAY, UnsupportedRayVersion, check_ray_version

    check_ray_version()  # the installed Ray is the one the patches fit
    check_ray_version(PATCHED_RAY)
    with pytest.raises(UnsupportedRayVersion, match=r"Ray 2\.61\.0 is installed.*PATCHED_RAY"):
        check_ray_version("2.61.0")


def test_a_replica_module_without_the_patched_function_fails_loudly() -> None:
    out = _run(
        """
        import types
        from vigil.infra import ray_local
        stub = types.ModuleType("ray.serve._private.replica")
        try:
            ray_local._patch_replica(stub)
        except ray_local.UnsupportedRayVersion as exc:
            print("refused:", exc)
        """
    )
    assert out.startswith("refused: ray.serve._private.replica has no add_port_to_grpc_server"), out
