"""The monitoring the operator is given matches the code: every metric that docs/MONITORING.md,
the alert rules and the dashboard name exists; every metric exists in the docs; promtool
accepts the rules and their tests (the alerts fire on what they are for), and the dashboard's
queries parse."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from rtcbot.metrics import Metrics
from rtcbot_stack.go_tools import PROMTOOL
from rtcbot_stack.paths import ROOT

MONITORING = ROOT / "monitoring"
DOC = ROOT / "docs" / "MONITORING.md"
NAME = re.compile(r"\brtcbot_[a-z_]+\b")


def series_names() -> dict[str, str]:
    """Series name → the metric family it belongs to (counters as `_total`, histograms'
    `_bucket`/`_sum`/`_count`), read from a fresh registry: no bookkeeping to drift."""
    out: dict[str, str] = {}
    for family in Metrics().registry.collect():
        if family.type == "counter":
            out[f"{family.name}_total"] = family.name
        elif family.type == "histogram":
            for suffix in ("", "_bucket", "_sum", "_count"):
                out[f"{family.name}{suffix}"] = family.name
        else:
            out[family.name] = family.name
    return out


def dashboard_queries() -> list[str]:
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def promtool() -> Path:
    if not PROMTOOL.binary.exists():
        pytest.fail(f"promtool is not built ({PROMTOOL.binary}): run `make setup`", pytrace=False)
    return PROMTOOL.binary


def test_every_named_metric_exists() -> None:
    known = series_names()
    texts = {
        "docs/MONITORING.md": DOC.read_text(),
        "monitoring/alerts.yml": (MONITORING / "alerts.yml").read_text(),
        "the dashboard": "\n".join(dashboard_queries()),
    }
    for where, text in texts.items():
        unknown = sorted(set(NAME.findall(text)) - set(known))
        assert unknown == [], f"{where} names metrics the bot does not have: {unknown}"


def test_every_metric_is_documented() -> None:
    documented = set(NAME.findall(DOC.read_text()))
    families = {family for family in series_names().values()}
    missing = sorted(f for f in families if f not in documented and f"{f}_total" not in documented)
    assert missing == [], f"metrics missing from docs/MONITORING.md: {missing}"


def test_promtool_accepts_the_rules_and_their_tests_pass() -> None:
    tool = promtool()
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(
            [str(tool), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)


def test_the_dashboards_queries_parse(tmp_path: Path) -> None:
    # As recording rules, promtool parses each query (with Grafana's legend variables unused).
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"rtcbot:dashboard_{i}", "expr": q}
                    for i, q in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    done = subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
