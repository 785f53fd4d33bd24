"""The monitoring configuration in dashboards/: generated dashboards match their specs and the
Grafana dashboard schema, every query names metrics that exist (or that the monitor will
export), every alert has unit tests that fire it and keep it silent, and everything stays on
loopback. The promtool and amtool checks are in tests/integration/test_monitoring_config.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # dashboards/ is a top-level directory, not an installed package

from dashboards import build, catalog, promql  # noqa: E402
from dashboards.grafana import GRID_WIDTH, Panel, Target  # noqa: E402
from dashboards.specs import all_dashboards  # noqa: E402

DASHBOARDS = ROOT / "dashboards"
PROMETHEUS = DASHBOARDS / "prometheus"
SCHEMA = json.loads((DASHBOARDS / "schema" / "dashboard.schema.json").read_text())
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def _committed() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted(build.OUT_DIR.glob("*.json"))]


def _rules() -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def _panel_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every PromQL query of a dashboard JSON: panel targets and annotations."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"{dashboard['uid']} / {panel['title']} / {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"{dashboard['uid']} / annotation {annotation['name']}", annotation["expr"]


# ---------------------------------------------------------------- generated JSON


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    assert build.stale() == [], "run: .venv/bin/python -m dashboards.build"
    assert {name for name, _ in _committed()} == {f"{d.uid}.json" for d in all_dashboards()}


def test_stale_reports_edited_missing_and_unknown_files(tmp_path: Path) -> None:
    build.write(tmp_path)
    assert build.stale(tmp_path) == []
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    edited = tmp_path / names[0]
    edited.write_text(edited.read_text().replace('"schemaVersion": 39', '"schemaVersion": 38'))
    (tmp_path / names[1]).unlink()
    (tmp_path / "hand-written.json").write_text("{}")
    assert build.stale(tmp_path) == sorted([names[0], names[1], "hand-written.json"])
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    build.write(tmp_path)  # rewrites the two, deletes the stranger
    assert build.stale(tmp_path) == []
    assert build.main(["--check", "--out", str(tmp_path)]) == 0


def test_the_five_dashboards_exist() -> None:
    titles = {d["title"] for _, d in _committed()}
    assert titles == {
        "Vigil / Operations",
        "Vigil / Model performance",
        "Vigil / Data drift",
        "Vigil / Business KPIs",
        "Vigil / KYC",
    }


# ---------------------------------------------------------------- schema


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", [f"{d.uid}.json" for d in all_dashboards()])
def test_dashboard_validates_against_the_grafana_schema(name: str) -> None:
    dashboard = json.loads((build.OUT_DIR / name).read_text())
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(dashboard), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def _first_panel(d: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in d["panels"] if p["type"] != "row")


BROKEN = {
    "no uid": lambda d: d.pop("uid"),
    "no panels": lambda d: d.update(panels=[]),
    "panel without targets": lambda d: _first_panel(d).update(targets=[]),
    "empty query": lambda d: _first_panel(d)["targets"][0].update(expr=""),
    "wider than the grid": lambda d: _first_panel(d)["gridPos"].update(w=GRID_WIDTH + 1),
    "panel without a grid position": lambda d: _first_panel(d).pop("gridPos"),
    "not a Prometheus data source": lambda d: _first_panel(d).update(datasource={"type": "loki", "uid": "x"}),
    "unknown panel type": lambda d: _first_panel(d).update(type=""),
    "query variable without a query": lambda d: d["templating"]["list"].append(
        {
            "name": "x",
            "type": "query",
            "hide": 0,
            "datasource": {"type": "prometheus", "uid": "p"},
            "refresh": 1,
        }
    ),
    "row not spanning the grid": lambda d: d["panels"][0]["gridPos"].update(w=12),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_schema_rejects_a_broken_dashboard(breakage: str) -> None:
    dashboard = copy.deepcopy(_committed()[0][1])
    BROKEN[breakage](dashboard)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dashboard, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("name,dashboard", _committed())
def test_panels_tile_the_grid_without_overlap(name: str, dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= GRID_WIDTH, f"{name}: {panel['title']} leaves the grid"
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{name}: {panel['title']} overlaps another panel"
        taken |= cells
        ref_ids = [t["refId"] for t in panel.get("targets", [])]
        assert len(ref_ids) == len(set(ref_ids)), f"{name}: {panel['title']} repeats a refId"


def test_a_panel_needs_a_query_and_must_fit() -> None:
    with pytest.raises(ValueError, match="no query"):
        Panel("empty", ())
    with pytest.raises(ValueError, match="does not fit"):
        Panel("wide", (Target("up"),), w=GRID_WIDTH + 1)


# ---------------------------------------------------------------- what the queries name


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _all_exprs() -> Iterator[tuple[str, str]]:
    for _, dashboard in _committed():
        yield from _panel_exprs(dashboard)
    for rule in _rules():
        yield f"rule {rule.get('record') or rule.get('alert')}", rule["expr"]


def test_every_query_names_a_catalogued_metric_or_a_recording_rule() -> None:
    known, recorded = set(catalog.ALL), _recorded()
    problems = []
    for where, expr in _all_exprs():
        metrics, records = promql.metric_names(expr), promql.recorded_names(expr)
        if not metrics and not records and not re.search(r"\b(up|ALERTS)\{", expr):
            problems.append(f"{where}: selects nothing known: {expr}")
        problems += [f"{where}: unknown metric {m}" for m in metrics if promql.family(m, known) is None]
        problems += [f"{where}: no recording rule {r}" for r in records - recorded]
    assert not problems, "\n".join(problems)


def test_every_catalogued_metric_is_used() -> None:
    used = {promql.family(m, set(catalog.ALL)) for _, expr in _all_exprs() for m in promql.metric_names(expr)}
    assert set(catalog.ALL) - used == set()


def test_variable_queries_name_catalogued_metrics() -> None:
    for _, dashboard in _committed():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                names = promql.metric_names(variable["query"])
                assert names and names <= set(catalog.ALL), variable


def test_the_vigil_catalogue_is_vigil_metrics() -> None:
    """Names, kinds and label names of catalog.VIGIL equal vigil/metrics.py's metrics: renaming
    a metric there without updating the rules and dashboards fails here."""
    from prometheus_client.metrics import MetricWrapperBase

    import vigil.metrics

    exported = {}
    for value in vars(vigil.metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")  # private, but no public list
            exported[name] = (value._type, tuple(value._labelnames))
    catalogued = {m.name: (m.kind, m.labels) for m in catalog.VIGIL}
    assert catalogued == exported


def test_the_monitor_catalogue_is_what_the_monitor_exports() -> None:
    """Each monitor series the rules and dashboards read is defined, with the same kind and label
    names, in vigil/monitoring/metrics.py (the monitor's exported names)."""
    from vigil.monitoring.metrics import DEFINITIONS

    exported = {d.name + ("_total" if d.kind == "counter" else ""): (d.kind, d.labels) for d in DEFINITIONS}
    mismatched = {
        m.name: ((m.kind, m.labels), exported.get(m.name))
        for m in catalog.MONITOR
        if exported.get(m.name) != (m.kind, m.labels)
    }
    assert mismatched == {}, "catalogued (kind, labels) vs the monitor's"


def test_monitor_names_do_not_collide_with_vigil_or_ray() -> None:
    assert len(catalog.ALL) == len(catalog.VIGIL) + len(catalog.MONITOR) + len(catalog.RAY)
    for metric in catalog.MONITOR:
        assert metric.name.startswith("vigil_"), metric.name


def test_ray_serve_names_exist_in_the_installed_ray() -> None:
    """Ray registers ``serve_<name>`` and exports ``ray_serve_<name>`` (``_total`` on counters):
    each catalogued name must be a metric the installed Ray Serve defines."""
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.origin is not None
    source = "\n".join(
        p.read_text(errors="replace") for p in (Path(spec.origin).parent / "serve").rglob("*.py")
    )
    missing = []
    for metric in catalog.RAY:
        registered = metric.name.removeprefix("ray_")
        if metric.kind == "counter":
            registered = registered.removesuffix("_total")
        if f'"{registered}"' not in source:
            missing.append(metric.name)
    assert not missing, f"not defined by the installed Ray Serve: {missing}"


def test_template_variables_are_defined_by_their_dashboard() -> None:
    for _, dashboard in _committed():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | set(promql.BUILTIN_INTERVALS)
        for where, expr in _panel_exprs(dashboard):
            assert promql.variables(expr) <= defined, f"{where}: {promql.variables(expr) - defined}"


def test_monitor_names_are_documented() -> None:
    readme = (DASHBOARDS / "README.md").read_text()
    assert [m.name for m in catalog.MONITOR if f"`{m.name}" not in readme] == []


# ---------------------------------------------------------------- promql helpers


def test_promql_helpers() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(vigil_stage_seconds_bucket{stage=~"$stage"}[$__rate_interval])))'
        ' / on (job) job:vigil_decisions:rate5m + ray_serve_batch_queue_length{label="vigil_in_a_string"}'
    )
    assert promql.metric_names(expr) == {"vigil_stage_seconds_bucket", "ray_serve_batch_queue_length"}
    assert promql.recorded_names(expr) == {"job:vigil_decisions:rate5m"}
    assert promql.variables(expr) == {"stage", "__rate_interval"}
    assert promql.substitute(expr).startswith(
        'histogram_quantile(0.99, sum by (le) (rate(vigil_stage_seconds_bucket{stage=~".*"}[5m])))'
    )
    assert promql.substitute("x[${__range}]") == "x[1h]"
    assert promql.family("vigil_stage_seconds_bucket", {"vigil_stage_seconds"}) == "vigil_stage_seconds"
    assert promql.family("vigil_stage_seconds_total", {"vigil_stage_seconds"}) is None


# ---------------------------------------------------------------- alert tests cover every alert


def test_every_alert_fires_and_stays_silent_in_the_rule_tests() -> None:
    alerts = {(rule["alert"], rule["labels"]["severity"]) for rule in _rules() if "alert" in rule}
    fired, silent = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if not check.get("exp_alerts"):
                    silent.add(check["alertname"])
                for expected in check.get("exp_alerts") or []:
                    fired.add((check["alertname"], expected["exp_labels"]["severity"]))
    assert alerts - fired == set(), "alerts (name, severity) no test fires"
    assert {name for name, _ in alerts} - silent == set(), "alerts no test keeps silent"
    assert fired - alerts == set(), "tests expect alerts no rule defines"


def test_every_alert_has_a_severity_the_alertmanager_routes() -> None:
    config = yaml.safe_load((DASHBOARDS / "alertmanager" / "alertmanager.yml").read_text())
    routed = {m for route in config["route"]["routes"] for m in route["matchers"]}
    for rule in _rules():
        if "alert" in rule:
            assert f'severity="{rule["labels"]["severity"]}"' in routed, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


# ---------------------------------------------------------------- loopback only


def _host(address: str) -> str:
    return urlsplit(address if "//" in address else f"//{address}").hostname or ""


def test_prometheus_scrapes_and_alerts_on_loopback_only() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = [
        t
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for t in static["targets"]
    ]
    targets += [
        t for am in config["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]
    ]
    assert targets and {_host(t) for t in targets} == {"127.0.0.1"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["vigil"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert jobs["vigil"].get("metrics_path", "/metrics") == "/metrics"
    assert "ray" in jobs
    assert sorted(config["rule_files"]) == sorted(f"rules/{p.name}" for p in RULE_FILES)


def test_alertmanager_posts_to_vigil_on_loopback() -> None:
    config = yaml.safe_load((DASHBOARDS / "alertmanager" / "alertmanager.yml").read_text())
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and set(urls) == {"http://127.0.0.1:8000/v1/ops/alertmanager"}
    assert all(w.get("send_resolved") for r in config["receivers"] for w in r["webhook_configs"])
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert "alertname" in inhibit["equal"]


def test_grafana_provisioning() -> None:
    provisioning = DASHBOARDS / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and _host(source["url"]) == "127.0.0.1"
    assert urlsplit(source["url"]).port == 9090
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert {p["name"] for p in providers} == {"vigil", "ray"}
    assert all(p["type"] == "file" and p["options"]["path"] for p in providers)
