"""The monitoring configuration in dashboards/ through the real tools: ``promtool check config``,
``promtool check rules``, ``promtool test rules`` (a case for every alert), ``amtool check-config``
and its routing, every dashboard query parsed by promtool, and a real Prometheus and Alertmanager
started on loopback with these files (rules loaded; warnings inhibited by criticals; the webhook
posted).

The tools come from Debian's ``prometheus`` (promtool, prometheus) and ``prometheus-alertmanager``
(amtool, prometheus-alertmanager) packages: ``scripts/install-monitoring.sh`` installs them. A
missing tool skips here, and fails under ``CI=true`` naming the package to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # dashboards/ is a top-level directory, not an installed package

from dashboards.build import OUT_DIR  # noqa: E402
from dashboards.promql import substitute  # noqa: E402
from vigil.infra.ports import free_port_pair  # noqa: E402

DASHBOARDS = ROOT / "dashboards"
PROMETHEUS_YML = DASHBOARDS / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DASHBOARDS / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DASHBOARDS / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER_YML = DASHBOARDS / "alertmanager" / "alertmanager.yml"

#: Which Debian package provides each tool (Debian names Alertmanager's server prometheus-alertmanager).
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tool(name: str) -> str:
    """The path of ``name``; a skip naming its package when missing, a failure under CI=true."""
    path = shutil.which(name) or (shutil.which("alertmanager") if name == "prometheus-alertmanager" else None)
    if path:
        return path
    reason = (
        f"{name} is not installed: install Debian's {PACKAGES[name]} package "
        f"(scripts/install-monitoring.sh, or apt-get install {PACKAGES[name]})"
    )
    if _ci():
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


def run(*args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; unless it ends as expected, fail with its output."""
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if (result.returncode == 0) != expect_ok:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}, expected {'0' if expect_ok else 'non-zero'}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result


def test_a_missing_tool_skips_but_fails_under_ci_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="prometheus-alertmanager package"):
        tool("amtool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"Debian's prometheus package.*CI=true requires it"):
        tool("promtool")


# ---------------------------------------------------------------- promtool


def test_promtool_check_config() -> None:
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_YML))
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))


@pytest.mark.slow
def test_promtool_test_rules() -> None:
    """Every alert's firing and silent cases (dashboards/prometheus/tests/rules_test.yml; that
    every alert has both is checked in tests/unit/test_dashboards.py)."""
    result = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_fails_a_wrong_expectation(tmp_path: Path) -> None:
    """The rule tests can fail: a scorer missing every batch, expected to stay silent, is reported."""
    case = {
        "rule_files": [str(p) for p in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'vigil_batch_size_count{job="vigil"}', "values": "0+60x30"},
                    {
                        "series": 'vigil_scorer_unavailable_total{job="vigil",scorer="anomaly"}',
                        "values": "0+60x30",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "VigilScorerUnavailable", "exp_alerts": []}
                ],
            }
        ],
    }
    path = tmp_path / "wrong_test.yml"
    path.write_text(yaml.safe_dump(case))
    result = run(tool("promtool"), "test", "rules", str(path), expect_ok=False)
    assert "VigilScorerUnavailable" in result.stdout + result.stderr


def _dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted(OUT_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} ({target['refId']})", target["expr"]))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                found.append((f"{path.name}: annotation {annotation['name']}", annotation["expr"]))
    return found


def _as_recording_rules(queries: list[tuple[str, str]]) -> str:
    rules = [
        {"record": f"dashboard_query:check:q{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    return yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each panel's query, Grafana variables filled in, parsed by ``promtool check rules`` as the
    expression of a recording rule. A query promtool rejects fails the test with its panel."""
    queries = _dashboard_queries()
    assert len(queries) > 50, "fewer dashboard queries than the five dashboards hold"
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(_as_recording_rules(queries))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        index = "\n".join(f"q{i}: {where}" for i, (where, _) in enumerate(queries))
        pytest.fail(
            f"promtool rejects dashboard queries:\n{result.stdout}\n{result.stderr}\n{index}", pytrace=False
        )
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The query check can fail: one unbalanced parenthesis among valid queries is reported."""
    path = tmp_path / "broken.yml"
    path.write_text(
        _as_recording_rules([("ok", "sum(rate(vigil_decisions_total[5m]))"), ("bad", "sum(rate(x[5m])")])
    )
    result = run(tool("promtool"), "check", "rules", str(path), expect_ok=False)
    assert "q1" in result.stdout + result.stderr


# ---------------------------------------------------------------- amtool


def test_amtool_check_config() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_YML))
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    "labels,receiver",
    [
        (["severity=critical", "alertname=VigilScreeningErrorBudgetBurn"], "vigil-page"),
        (["severity=warning", "alertname=VigilFeatureDrift"], "vigil-ticket"),
        (["alertname=Unlabelled"], "vigil-ticket"),
    ],
)
def test_amtool_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels)
    assert result.stdout.strip() == receiver


# ---------------------------------------------------------------- the real servers, on loopback


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            command = " ".join(map(str, proc.args)) if isinstance(proc.args, list) else str(proc.args)
            pytest.fail(f"{command} exited {proc.returncode}:\n{log.read_text()}", pytrace=False)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout_s} s:\n{log.read_text()}", pytrace=False)


@contextmanager
def _server(args: list[str], ready_url: str, log: Path) -> Iterator[None]:
    """Run a server (its output to ``log``, not a pipe nobody drains) until the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(ready_url, proc, log)
            yield
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_prometheus_starts_with_the_config_and_loads_every_rule(tmp_path: Path) -> None:
    port = free_port_pair()
    base = f"http://127.0.0.1:{port}"
    args = [
        tool("prometheus"),
        f"--config.file={PROMETHEUS_YML}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
    ]
    with _server(args, f"{base}/-/ready", tmp_path / "prometheus.log"):
        groups = httpx.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {(r.get("name"), r["type"]) for g in groups for r in g["rules"]}
        targets: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30  # the scrape manager lists targets shortly after ready
        while len(targets) < 5 and time.monotonic() < deadline:
            targets = httpx.get(f"{base}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            time.sleep(0.2)
    expected = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expected.add(
                    (rule["record"], "recording") if "record" in rule else (rule["alert"], "alerting")
                )
    assert loaded == expected
    assert {t["labels"]["job"] for t in targets} == {
        "vigil",
        "vigil-monitor",
        "ray",
        "prometheus",
        "alertmanager",
    }
    assert {t["scrapeUrl"].split("/")[2].split(":")[0] for t in targets} == {"127.0.0.1"}


class _Webhook:
    """A loopback HTTP server standing in for Vigil's /v1/ops/alertmanager: keeps each JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/ops/alertmanager"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} {severity}"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def test_alertmanager_inhibits_warnings_by_criticals_and_posts_the_webhook(tmp_path: Path) -> None:
    """The real Alertmanager with alertmanager.yml, its webhook URL pointed at a stand-in: a
    critical mutes the warning of the same alert and scope, not another scope's, and a critical
    reaches the webhook from the vigil-page receiver."""
    webhook = _Webhook()
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook.url
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port_pair()
    base = f"http://127.0.0.1:{port}"
    args = [
        tool("prometheus-alertmanager"),
        f"--config.file={config_path}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--storage.path={tmp_path / 'data'}",
    ]
    try:
        with _server(args, f"{base}/-/ready", tmp_path / "alertmanager.log"):
            sent = [
                _alert("VigilScorerUnavailable", "critical", job="vigil", scorer="anomaly"),
                _alert("VigilScorerUnavailable", "warning", job="vigil", scorer="anomaly"),
                _alert("VigilScorerUnavailable", "warning", job="vigil", scorer="supervised"),
            ]
            assert httpx.post(f"{base}/api/v2/alerts", json=sent, timeout=10).status_code == 200
            deadline = time.monotonic() + 30  # the page route's group_wait is 10 s
            state: dict[tuple[str, str], list[str]] = {}
            while time.monotonic() < deadline and not (state and webhook.bodies):
                alerts = httpx.get(f"{base}/api/v2/alerts", timeout=10).json()
                state = {
                    (a["labels"]["severity"], a["labels"]["scorer"]): a["status"]["inhibitedBy"]
                    for a in alerts
                }
                if len(state) < 3:
                    state = {}
                time.sleep(0.5)
    finally:
        webhook.close()
    assert state, "Alertmanager never listed the three alerts"
    assert state[("warning", "anomaly")], "the warning under a critical of the same scope is not inhibited"
    assert state[("critical", "anomaly")] == []
    assert state[("warning", "supervised")] == [], "a warning of another scope is inhibited"
    assert webhook.bodies, "no webhook call within 30 s"
    body = webhook.bodies[0]
    assert body["receiver"] == "vigil-page" and body["status"] == "firing"
    assert [a["labels"]["severity"] for a in body["alerts"]] == ["critical"]
    assert body["alerts"][0]["labels"]["scorer"] == "anomaly"
