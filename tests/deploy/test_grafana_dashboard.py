"""deploy/grafana: a dashboard Grafana can import, whose queries Prometheus can parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from support.deployfiles import DASHBOARD, all_panels, dashboard_exprs, run


def test_panels_query_prometheus_on_a_clean_grid() -> None:
    """Every panel has PromQL targets on ${DS_PROMETHEUS}; ids unique, no overlaps."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    [ds] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (ds["name"], ds["query"]) == ("DS_PROMETHEUS", "prometheus")
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for p in (p for p in all_panels(dashboard) if p["type"] != "row"):
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs, p["title"]
        assert len(set(refs)) == len(refs), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's interval and template variables by values PromQL accepts."""
    expr = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), Grafana's variables filled in."""
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run("promtool", "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
