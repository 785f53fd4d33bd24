"""What a PromQL expression refers to, and the expression with Grafana's variables filled in.

Not a PromQL parser: ``promtool check rules`` is the parser (tests/integration runs every panel
query through it after :func:`substitute`). These helpers only find the names an expression
selects, so tests can check each against :mod:`dashboards.catalog` and the recording rules.
"""

from __future__ import annotations

import re

#: Grafana's built-in interval variables, replaced by a value a range selector accepts.
BUILTIN_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RECORDED = re.compile(r"(?<![\w:])[a-zA-Z_]\w*:[\w:]*\w")
_METRIC = re.compile(r"(?<![\w:$])(?:vigil|ray_serve)_\w+(?![\w:])")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def recorded_names(expr: str) -> set[str]:
    """Names with a colon (recording rules, by Prometheus's naming convention) the expression selects."""
    return set(_RECORDED.findall(_without_strings(expr)))


def metric_names(expr: str) -> set[str]:
    """Vigil and Ray Serve series names the expression selects (label values in quotes are skipped)."""
    return set(_METRIC.findall(_without_strings(expr)))


def family(name: str, known: set[str]) -> str | None:
    """The catalog name ``name`` belongs to: itself, or a histogram's base name for its
    ``_bucket``/``_sum``/``_count`` series; ``None`` if neither is in ``known``."""
    if name in known:
        return name
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in known:
            return name.removesuffix(suffix)
    return None


def variables(expr: str) -> set[str]:
    """Grafana variables the expression uses (``$name`` or ``${name}``), built-ins included."""
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str) -> str:
    """``expr`` as Prometheus would receive it: built-in intervals get a duration, and any other
    variable (used in label matchers, ``=~"$model"``) matches everything."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return BUILTIN_INTERVALS.get(name, ".*")

    return _VARIABLE.sub(value, expr)
