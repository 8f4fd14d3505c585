"""The Grafana dashboard reads only metrics the services register, so it cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from shared.runtime import Runtime
from tests.shared.test_http_access import BUILDERS

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "huitou.json"
METRIC = re.compile(r"\bhuitou_[a-z0-9_]+")
# What the text format shows of each metric type (prometheus_client's families drop _total).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
# The panels the issue asks for, each found by its title.
PANELS = {"Throughput", "Consumer lag", "Dead letters", "Batch latency", "Job runs"}


def exposed(app: FastAPI) -> set[str]:
    """The sample names a service's /metrics can show."""
    runtime: Runtime = app.state.runtime
    return {
        f"{family.name}{suffix}"
        for family in runtime.registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def expressions(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Every PromQL expression of the dashboard, by panel title (and its variables)."""
    found = {
        panel["title"]: [t["expr"] for t in panel.get("targets", [])]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
    }
    found["variables"] = [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    return found


def test_every_metric_the_dashboard_queries_is_one_a_service_exports() -> None:
    registered = set().union(*(exposed(build()) for build in BUILDERS.values()))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = expressions(dashboard)
    assert queries.keys() >= PANELS
    for title, exprs in queries.items():
        named = {name for expr in exprs for name in METRIC.findall(expr)}
        assert named, f"panel {title!r} queries no Huitou metric"
        assert named <= registered, f"panel {title!r} reads {sorted(named - registered)}"


def test_a_renamed_metric_would_be_caught() -> None:
    registered = exposed(BUILDERS["loyalty"]())
    assert "huitou_batch_duration_seconds_bucket" in registered
    assert "huitou_events_processed_total" in registered
    assert "huitou_batch_seconds_bucket" not in registered
    assert "huitou_events_processed" not in registered  # a counter is read with _total
