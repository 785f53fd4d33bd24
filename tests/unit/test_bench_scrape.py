"""The serving benchmark's scrape of a system's own stage metrics (benchmarks/bench_serve.py)."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_serve  # a script directory, not a package

METRICS = (
    b"# HELP vigil_batch_size items per batch\n# TYPE vigil_batch_size histogram\n"
    b'vigil_batch_size_bucket{le="+Inf"} 3.0\nvigil_batch_size_count 3.0\nvigil_batch_size_sum 96.0\n'
)


def _serve(answers: list[tuple[int, bytes]]) -> tuple[ThreadingHTTPServer, list[int]]:
    """A loopback server answering /metrics with ``answers`` in turn (the last one repeats)."""
    served: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[min(len(served), len(answers) - 1)]
            served.append(status)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, served


def test_a_refusal_right_after_an_overload_is_waited_out_not_parsed_as_metrics() -> None:
    # Serve's admission answers 503 with a plain-text body while the Ingress drains; parsing
    # that body crashed the c=192 run ("could not convert string to float: 'dropped'").
    refusal = (503, b"Request dropped due to backpressure (num_queued_requests=64, max_queued_requests=64).")
    server, served = _serve([refusal, refusal, (200, METRICS)])
    try:
        system = SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}")
        sums = bench_serve.screening_sums(system)  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()
    assert served == [503, 503, 200]
    assert sums[("vigil_batch_size", "", "count")] == 3.0
    assert sums[("vigil_batch_size", "", "sum")] == 96.0


def test_a_system_that_keeps_refusing_gives_no_sums() -> None:
    server, served = _serve([(503, b"Request dropped")])
    try:
        system = SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}")
        assert bench_serve.screening_sums(system, attempts=3, pause_s=0.01) == {}  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()
    assert served == [503, 503, 503]
