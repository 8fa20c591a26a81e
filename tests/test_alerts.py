"""Alerts on the platform itself (dashboards/prometheus/alerts.yml): valid and unit-tested with
Debian's ``promtool``, loaded by the compose stack's Prometheus, built only from metrics a
running platform exports, and each with its entry in docs/runbook.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from servers import require_binary
from test_compose import ROOT, host_path_of, services
from test_grafana import _METRIC, PROMETHEUS_CONFIG, PROMETHEUS_OWN, scraped

RULES = ROOT / "dashboards" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "dashboards" / "prometheus" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

__all__ = ["scraped"]  # the fixture, shared with the Grafana tests


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == {rule["alert"] for rule in alerts()}


def test_the_compose_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    prometheus = services()["prometheus"]
    loaded = {host_path_of(prometheus, path) for path in config["rule_files"]}
    assert loaded == {RULES}


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to dashes."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    }


def test_every_alert_has_its_runbook_entry() -> None:
    documented = anchors(RUNBOOK.read_text(encoding="utf-8"))
    for rule in alerts():
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert Path(ROOT / page) == RUNBOOK, rule["alert"]
        assert anchor in documented, f"{rule['alert']}: docs/runbook.md has no #{anchor}"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def test_the_rules_use_metrics_the_platform_exports(scraped: dict[str, set[str]]) -> None:
    for rule in alerts():
        names = set(_METRIC.findall(rule["expr"]))
        assert names, rule["alert"]
        for name in names - PROMETHEUS_OWN:
            assert name in scraped, f"{rule['alert']}: the platform exports no {name}"
