"""A small model of Grafana's classic dashboard JSON (schemaVersion 39, Grafana 11.x), as plain
dataclasses: a :class:`Dashboard` holds :class:`Row` s of panels, each with its PromQL
:class:`Target` s, and :meth:`Dashboard.to_json` lays them out and numbers them.

Only the parts Vigil's dashboards use are modelled; what a panel emits follows the dashboard JSON
model (grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/)
and is checked against dashboards/schema/dashboard.schema.json. Nothing here talks to Grafana.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 39  # Grafana 11.0's dashboard schema version
GRID_WIDTH = 24  # Grafana's grid is 24 columns wide
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

PanelType = Literal["timeseries", "stat", "heatmap", "bargauge"]


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel. ``legend`` is Grafana's legend format (``{{label}}``);
    ``instant`` asks for the last value only (stat and bar gauge panels)."""

    expr: str
    legend: str = ""
    instant: bool = False
    heatmap: bool = False  # buckets as rows of a heatmap (``le`` becomes the y axis)

    def to_json(self, ref_id: str) -> dict[str, Any]:
        return {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "instant": self.instant,
            "format": "heatmap" if self.heatmap else "time_series",
            "editorMode": "code",
        }


@dataclass(frozen=True)
class Threshold:
    """A colour from ``value`` up (``None``: from minus infinity, the base step)."""

    value: float | None
    color: str


GREEN_BASE = Threshold(None, "green")


@dataclass(frozen=True)
class Panel:
    """A panel of ``w`` x ``h`` grid cells. ``unit`` is a Grafana unit id (``s``, ``ms``,
    ``reqps``, ``percentunit``, ``short``); ``thresholds`` after the base step draw lines on a
    time series and colour a stat or bar gauge."""

    title: str
    targets: tuple[Target, ...]
    description: str = ""
    type: PanelType = "timeseries"
    unit: str = "short"
    w: int = 12
    h: int = 8
    min: float | None = None
    max: float | None = None
    thresholds: tuple[Threshold, ...] = ()
    stacked: bool = False

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError(f"panel {self.title!r} has no query")
        if not 1 <= self.w <= GRID_WIDTH or self.h < 1:
            raise ValueError(f"panel {self.title!r}: size {self.w}x{self.h} does not fit the grid")

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        steps = [{"color": t.color, "value": t.value} for t in (GREEN_BASE, *self.thresholds)]
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "color": {"mode": "thresholds" if self.type in ("stat", "bargauge") else "palette-classic"},
        }
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.type == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 20 if self.stacked else 0,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if self.stacked else "none", "group": "A"},
                "thresholdsStyle": {"mode": "line" if self.thresholds else "off"},
            }
        return {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h},
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": self._options(),
            "transformations": [],
            "transparent": False,
        }

    def _options(self) -> dict[str, Any]:
        reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
        if self.type == "timeseries":
            return {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        if self.type == "stat":
            return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "area", "textMode": "auto"}
        if self.type == "bargauge":
            return {"reduceOptions": reduce, "displayMode": "gradient", "orientation": "horizontal"}
        return {  # heatmap of pre-bucketed series (Prometheus histograms), nothing recalculated
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "yAxis": {"axisPlacement": "left"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
        }


@dataclass(frozen=True)
class Row:
    """A titled band of panels, laid out left to right and wrapped at the grid's width."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable: the Prometheus data source picker, or a query over label values
    (``label_values(metric, label)``) with multi-select and an "All" that matches ``.*``."""

    name: str
    label: str
    query: str = ""  # empty: the data source variable

    def to_json(self) -> dict[str, Any]:
        if not self.query:
            return {
                "name": self.name,
                "label": self.label,
                "type": "datasource",
                "query": "prometheus",
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "current": {},
                "options": [],
            }
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": DATASOURCE,
            "query": self.query,
            "definition": self.query,
            "hide": 0,
            "refresh": 2,  # on time range change: label values follow the data
            "regex": "",
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {},
            "options": [],
        }


DATASOURCE_VARIABLE = Variable("datasource", "Data source")


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: ``uid`` is stable (links and provisioning rely on it), ``tags`` link the
    Vigil dashboards to each other."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("vigil",)
    refresh: str = "30s"
    time_from: str = "now-6h"
    annotations: tuple[Target, ...] = field(default=())

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]

    def to_json(self) -> dict[str, Any]:
        panels: list[dict[str, Any]] = []
        next_id, y = 1, 0
        for row in self.rows:
            panels.append(
                {
                    "id": next_id,
                    "type": "row",
                    "title": row.title,
                    "collapsed": False,
                    "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1},
                    "panels": [],
                }
            )
            next_id, y = next_id + 1, y + 1
            x, line_height = 0, 0
            for panel in row.panels:
                if x + panel.w > GRID_WIDTH:
                    x, y, line_height = 0, y + line_height, 0
                panels.append(panel.to_json(next_id, x, y))
                next_id, x, line_height = next_id + 1, x + panel.w, max(line_height, panel.h)
            y += line_height
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "utc",
            "editable": False,  # provisioned from files: change the generator, not the UI
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "links": [
                {
                    "title": "Vigil dashboards",
                    "type": "dashboards",
                    "tags": ["vigil"],
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "targetBlank": False,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                }
            ],
            "annotations": {"list": [_BUILTIN_ANNOTATION, *(_alert_annotation(t) for t in self.annotations)]},
            "templating": {"list": [v.to_json() for v in (DATASOURCE_VARIABLE, *self.variables)]},
            "panels": panels,
        }


_BUILTIN_ANNOTATION: dict[str, Any] = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _alert_annotation(target: Target) -> dict[str, Any]:
    return {
        "name": target.legend,
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "expr": target.expr,
        "step": "60s",
        "titleFormat": "{{alertname}}",
        "textFormat": "{{severity}}",
        "useValueForTime": False,
    }
