"""contrib/grafana: the dashboard imports as it is and asks only for metrics polytape exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from polytape import metrics

DASHBOARD = Path(__file__).parents[2] / "contrib" / "grafana" / "polytape-dashboard.json"


def exported() -> dict[str, set[str]]:
    """Every series name polytape's registry exposes, with its label names."""
    out: dict[str, set[str]] = {}
    for collector in metrics.REGISTRY._collector_to_names:  # the metric objects of metrics.py
        labels = set(getattr(collector, "_labelnames", ()))
        kind = getattr(collector, "_type", "")
        name = collector._name  # type: ignore[attr-defined]
        names = {
            "counter": [name + "_total"],
            "histogram": [name + s for s in ("_bucket", "_sum", "_count")],
        }.get(kind, [name])
        for n in names:
            out[n] = labels | ({"le"} if n.endswith("_bucket") else set())
    return out


def test_the_dashboard_is_importable_and_uses_only_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] == "polytape" and dash["schemaVersion"] >= 30
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    series = exported()
    used = set()
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"] and panel["gridPos"]["w"] > 0
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\b(polytape_[a-z0-9_]+)\b", expr)) - {"polytape_job"}
            assert names, expr
            for name in names:
                assert name in series, f"{panel['title']}: {name} is not a polytape metric"
                used.add(name)
            for group in re.findall(r"by \(([^)]*)\)", expr):
                for label in (g.strip() for g in group.split(",")):
                    known = set().union(*(series[n] for n in names)) | {"polytape_job", "instance"}
                    assert label in known, f"{panel['title']}: no label {label!r} on {names}"
    # every metric family polytape exports has a panel
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in series}
    assert families <= {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
