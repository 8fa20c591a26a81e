"""Grafana provisioning of the compose stack (dashboards/grafana): the datasources point at
services of docker-compose.yml over TLS with files that are mounted, every dashboard loads, every
panel uses a provisioned datasource, every Prometheus query names metrics that a running platform
really exports (scraped from one, configured as in the compose stack), and every Flux query uses
the measurement, field, tags and codes the platform's time-series exporter writes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from chain import until
from delivery import GATEWAY, mqtt_settings, running
from prometheus_client.parser import text_string_to_metric_families
from servers import BrokerFixture
from test_compose import (
    ROOT,
    filled_env,
    host_path_of,
    mount_for,
    mounts,
    platform_settings,
    services,
)

from gateway.alarms.rules import DEFAULT_THRESHOLDS, WEIGHT_GAIN
from gateway.ingest.timeseries import MEASUREMENT, LineBuilder
from gateway.records.models import DEFAULT_TENANT
from gateway.records.unit_of_work import ExportRow
from gateway.registry.service import Registry
from gateway.service import Platform
from hl7.tools import send_message
from tryggheim import codes
from tryggheim.apps.broker import find_free_port
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSession
from tryggheim.wire import encode_batch, obs_topic, status_topic

GRAFANA = ROOT / "dashboards" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
PROVIDERS = GRAFANA / "provisioning" / "dashboards"
DASHBOARDS = GRAFANA / "dashboards"
PROMETHEUS_CONFIG = ROOT / "deploy" / "compose" / "prometheus" / "prometheus.yml"

#: Series Prometheus makes itself for every scrape target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Columns every Flux table has, beside the tags.
FLUX_COLUMNS = {"_measurement", "_field", "_value", "_time", "_start", "_stop"}


def datasources() -> list[dict[str, Any]]:
    result = []
    for path in sorted(DATASOURCES.glob("*.yml")):
        result += yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    return result


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # collapsed rows
    return found


def targets(datasource_type: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard title, panel, target) for every query of that datasource type."""
    return [
        (dashboard["title"], panel, target)
        for dashboard in dashboards().values()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if (target.get("datasource") or panel["datasource"])["type"] == datasource_type
    ]


# -- provisioning ----------------------------------------------------------------------------------


def test_grafana_mounts_the_provisioning_of_this_directory() -> None:
    grafana = services()["grafana"]
    for directory in (DATASOURCES, PROVIDERS, DASHBOARDS):
        assert any(m.host_path == directory for m in mounts(grafana)), directory
    for path in PROVIDERS.glob("*.yml"):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            assert provider["type"] == "file"
            assert host_path_of(grafana, provider["options"]["path"]) == DASHBOARDS
            assert provider["allowUiUpdates"] is False


def test_datasources_reach_compose_services_over_verified_tls() -> None:
    all_services = services()
    grafana = all_services["grafana"]
    sources = datasources()
    assert {s["uid"] for s in sources} == {"tryggheim-prometheus", "tryggheim-influxdb"}
    for source in sources:
        url = source["url"]
        match = re.fullmatch(r"https://([a-z0-9-]+):(\d+)/?", url)
        assert match, f"{source['name']}: {url} is not HTTPS to a compose service"
        assert match.group(1) in all_services
        assert set(grafana["networks"]) & set(all_services[match.group(1)]["networks"])
        assert source["jsonData"]["tlsAuthWithCACert"] is True
        assert source["access"] == "proxy" and source["editable"] is False
        # Secrets only by reference to files mounted in Grafana's container.
        for key, value in source.get("secureJsonData", {}).items():
            file = re.fullmatch(r"\$__file\{(.+)\}", value)
            assert file, f"{source['name']}: {key} must be read from a file"
            mount = mount_for(grafana, file.group(1))
            assert mount is not None and mount.read_only and not mount.is_bind, (key, value)
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    assert prometheus["url"] == "https://prometheus:9090"
    assert prometheus["jsonData"]["tlsAuth"] is True  # Prometheus wants a client certificate
    influx = next(s for s in sources if s["type"] == "influxdb")
    assert influx["url"] == "https://influxdb:8086"
    token = re.fullmatch(r"\$__file\{(.+)\}", influx["secureJsonData"]["token"])
    assert token is not None
    mount = mount_for(grafana, token.group(1))
    assert mount is not None and mount.source == "influxdb-token-grafana"


def test_the_influxdb_datasource_reads_the_bucket_the_platform_writes(tmp_path: Path) -> None:
    _, env = filled_env(tmp_path)
    timeseries = platform_settings(services()["platform"], env).timeseries
    assert timeseries is not None
    influx = next(s for s in datasources() if s["type"] == "influxdb")
    assert influx["jsonData"]["version"] == "Flux"
    assert influx["jsonData"]["organization"] == timeseries.org
    assert influx["jsonData"]["defaultBucket"] == timeseries.bucket
    for title, _, target in targets("influxdb"):
        assert re.findall(r'from\(bucket: "([^"]+)"\)', target["query"]) == [timeseries.bucket]
        assert title


# -- dashboards ------------------------------------------------------------------------------------


def test_dashboards_load_and_use_only_provisioned_datasources() -> None:
    by_uid = {s["uid"]: s["type"] for s in datasources()}
    loaded = dashboards()
    assert set(loaded) == {"patient-trends.json", "platform-health.json"}
    assert len({d["uid"] for d in loaded.values()}) == len(loaded)
    for name, dashboard in loaded.items():
        assert dashboard["title"] and dashboard["uid"].startswith("tryggheim-"), name
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            used = [panel["datasource"], *(t.get("datasource") for t in panel["targets"])]
            for datasource in filter(None, used):
                assert by_uid.get(datasource["uid"]) == datasource["type"], (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), (name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            assert by_uid.get(variable["datasource"]["uid"]) == variable["datasource"]["type"]


# -- Prometheus queries against a real scrape ------------------------------------------------------


@pytest.fixture
async def scraped(mosquitto: BrokerFixture, tmp_path: Path) -> AsyncIterator[dict[str, set[str]]]:
    """Sample name -> label names, from /metrics of a platform configured as in the compose
    stack (its platform.toml: time-series export, HL7 listener), with local servers in place of
    the stack's, after a home gateway reported its status and a fall raised an alarm."""
    _, env = filled_env(tmp_path)
    compose = platform_settings(services()["platform"], env)
    assert compose.timeseries is not None and compose.hl7_listen is not None
    hl7_port = find_free_port()
    settings = compose.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
            "mqtt": mqtt_settings(mosquitto, "platform"),
            "http_host": "127.0.0.1",
            "http_port": find_free_port(),
            "http_tls_cert": None,
            "http_tls_key": None,
            "metrics_refresh_s": 0.2,
            # Nobody listens there: the export waits, and its backlog is reported.
            "timeseries": compose.timeseries.model_copy(
                update={"url": f"http://127.0.0.1:{find_free_port()}"}
            ),
            "hl7_listen": compose.hl7_listen.model_copy(
                update={"host": "127.0.0.1", "port": hl7_port, "tls_cert": None, "tls_key": None}
            ),
            "hl7": compose.hl7.model_copy(update={"settle_s": 0.1, "tls_ca": None}),
        }
    )
    service = Platform(settings)
    await service.store.migrate()
    registry = Registry(service.store)
    patient = await registry.create_patient(
        DEFAULT_TENANT,
        national_id="01014090011",
        family_name="Ødegård",
        given_name="Kari",
        # A GP endpoint nobody answers: the ORU^R01 waits in the outbound queue.
        gp_hl7_host="127.0.0.1",
        gp_hl7_port=find_free_port(),
    )
    await registry.register_gateway(DEFAULT_TENANT, GATEWAY, patient.id, datetime.now(UTC))
    cuff = "C0:10:00:00:00:01"
    await registry.pair_device(
        DEFAULT_TENANT,
        device_id=cuff,
        patient_id=patient.id,
        gateway_id=GATEWAY,
        profile=codes.DeviceProfile.BLOOD_PRESSURE,
    )
    fall = Observation(
        gateway_id=GATEWAY,
        seq=1,
        device_id="hall",
        source="mqtt:zigbee2mqtt",
        code=codes.EVENT_FALL.ref,
        value=Decimal(1),
        unit="1",
        time=datetime.now(UTC),
    )
    systolic = Observation(
        gateway_id=GATEWAY,
        seq=2,
        device_id=cuff,
        source="ble:2A35",
        code=codes.NIBP_SYS.ref,
        value=Decimal(128),
        unit="mm[Hg]",
        time=datetime.now(UTC),
    )
    async with running(service.run(), "platform"):
        await until(lambda: service.started, what="the platform")
        # One HL7 message in, so that the inbound queue has a state to show.
        adt = "MSH|^~\\&|EPJ|SYKEHUS|TRYGGHEIM|KOMMUNE|20260101120000+0100||ADT^A08|G1|P|2.6\r"
        await send_message("127.0.0.1", hl7_port, adt, timeout=10)
        async with MqttSession(mqtt_settings(mosquitto, GATEWAY), "gw-grafana") as mqtt:
            await mqtt.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, [fall, systolic]))
            status = b'{"v": 1, "gateway_id": "gw-test", "state": "online", "outbox_depth": 7}'
            await mqtt.publish(status_topic(GATEWAY), status)
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base) as http:

            async def reported() -> bool:
                text = (await http.get("/metrics")).text
                return all(
                    part in text
                    for part in (
                        "tryggheim_timeseries_backlog 2.0",
                        "tryggheim_hl7_outbound_messages{",
                        "tryggheim_hl7_inbound_messages{",
                        'tryggheim_gateways{state="online"} 1.0',
                        "tryggheim_alarm_latency_seconds_count 1.0",
                    )
                )

            await until(reported, timeout=20, what="the metrics")
            text = (await http.get("/metrics")).text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, set())  # families without samples yet
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    yield samples


_METRIC = re.compile(r"\b(tryggheim_[a-z0-9_]+|up)\b")
_SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\{([^}]*)\}")
_BY = re.compile(r"\bby \(([^)]*)\)")


def test_prometheus_queries_use_metrics_the_platform_exports(
    scraped: dict[str, set[str]],
) -> None:
    queries = targets("prometheus")
    assert queries
    for title, panel, target in queries:
        expr = target["expr"]
        where = f"{title} / {panel['title']}: {expr}"
        names = set(_METRIC.findall(expr))
        assert names, where
        for name in names - PROMETHEUS_OWN:
            assert name in scraped, f"{where}: the platform exports no {name}"
        # Labels: the metric's own, and those Prometheus adds to every series of a target.
        target_labels = {"job", "instance", *scrape_target_labels()}
        everything = set().union(*(scraped.get(name, set()) for name in names)) | target_labels
        for name, selector in _SELECTOR.findall(expr):
            allowed = scraped.get(name, set()) | target_labels
            for matcher in filter(None, (part.strip() for part in selector.split(","))):
                label = re.split(r"[=!~]", matcher, maxsplit=1)[0]
                assert label in allowed, f"{where}: {name} has no label {label}"
        for grouping in _BY.findall(expr):
            for label in (part.strip() for part in grouping.split(",")):
                assert label in everything | {"le"}, f"{where}: no label {label}"


def scrape_target_labels() -> set[str]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {
        label
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for label in static.get("labels", {})
    }


def test_platform_health_shows_what_operators_watch() -> None:
    health = next(d for d in dashboards().values() if d["uid"] == "tryggheim-platform-health")
    exprs = [t["expr"] for p in panels(health) for t in p.get("targets", [])]
    text = "\n".join(exprs)
    for wanted in (
        "rate(tryggheim_ingest_observations_new_total[$__rate_interval])",
        "histogram_quantile(0.5, sum by (le) (rate(tryggheim_alarm_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(tryggheim_alarm_latency_seconds_bucket",
        'tryggheim_gateways{state="online"}',
        "tryggheim_gateway_outbox_depth",
        "tryggheim_hl7_outbound_messages",
        "tryggheim_hl7_inbound_messages",
        "tryggheim_timeseries_backlog",
        "tryggheim_alarms_open",
    ):
        assert wanted in text, wanted
    # `up` is about the scrape job of the compose Prometheus.
    jobs = [
        job["job_name"] for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    ]
    for job in re.findall(r'job="([^"]+)"', text):
        assert job in jobs


def test_stat_panels_show_zero_rather_than_no_data() -> None:
    """A count with nothing to count (no gateway offline, no alarm open, before the first
    scrape) is 0 on the operators' screen, not "No data"."""
    health = next(d for d in dashboards().values() if d["uid"] == "tryggheim-platform-health")
    stats = [p for p in panels(health) if p["type"] == "stat" and p["title"] != "Platform up"]
    assert {"Gateways offline", "Alarms open"} <= {p["title"] for p in stats}
    for panel in stats:
        for target in panel["targets"]:
            assert target["expr"].endswith(" or vector(0)"), panel["title"]


# -- Flux queries against what the exporter writes ------------------------------------------------


def written_tags() -> set[str]:
    """Tag keys of a line the time-series exporter writes."""
    row = ExportRow(
        pk=1,
        code=codes.SPO2.ref,
        unit="%",
        gateway_id="gw-1",
        device_id="dev-1",
        patient_id=7,
        value="95",
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    line = LineBuilder().line(row, "95")
    head = line.split(" ", 1)[0]
    measurement, *tags = head.split(",")
    assert measurement == MEASUREMENT and line.split(" ")[1] == "value=95"
    return {tag.split("=", 1)[0] for tag in tags}


def test_flux_queries_use_the_measurement_field_and_tags_written() -> None:
    tags = written_tags()
    assert tags == {"code", "unit", "gateway", "device", "patient"}
    queries = targets("influxdb")
    assert queries
    for title, panel, target in queries:
        query = target["query"]
        where = f"{title} / {panel['title']}"
        assert f'r._measurement == "{MEASUREMENT}"' in query, where
        assert 'r._field == "value"' in query, where
        for column in re.findall(r"\br\.([A-Za-z_]+)", query):
            assert column in tags | FLUX_COLUMNS, f"{where}: r.{column} is never written"
        kept = re.search(r"keep\(columns: \[([^\]]*)\]\)", query)
        if kept is not None:
            columns = set(re.findall(r'"([^"]+)"', kept.group(1)))
            assert columns <= tags | FLUX_COLUMNS, where
            if "aggregateWindow" in query:  # it needs the window bounds
                assert {"_start", "_stop"} <= columns, where
        for code in re.findall(r'r\.code == "([^"]+)"', query):
            assert code in codes.METRICS, f"{where}: unknown code {code}"


def test_patient_trends_has_a_patient_variable_and_the_alarm_limits() -> None:
    trends = next(d for d in dashboards().values() if d["uid"] == "tryggheim-patient-trends")
    (variable,) = trends["templating"]["list"]
    assert variable["name"] == "patient" and variable["type"] == "query"
    assert (
        'tag: "patient"' in variable["query"]
        and f'r._measurement == "{MEASUREMENT}"' in (variable["query"])
    )
    limits: dict[str, set[tuple[Decimal, str]]] = {}
    for rule in DEFAULT_THRESHOLDS:
        for code in rule.codes:
            limits.setdefault(code, set()).add((rule.limit, rule.unit))
    units = {code: unit for code, pairs in limits.items() for _, unit in pairs}
    units[WEIGHT_GAIN.code] = WEIGHT_GAIN.unit
    shown: set[str] = set()
    for panel in panels(trends):
        if panel["type"] != "timeseries":
            continue
        panel_codes: set[str] = set()
        for target in panel["targets"]:
            query = target["query"]
            assert 'r.patient == "${patient}"' in query, panel["title"]
            target_codes = set(re.findall(r'r\.code == "([^"]+)"', query))
            (unit,) = re.findall(r'r\.unit == "([^"]+)"', query)
            for code in target_codes & set(units):
                assert units[code] == unit, f"{panel['title']}: {code} is alarmed in {units[code]}"
            panel_codes |= target_codes
        shown |= panel_codes
        expected = {limit for code in panel_codes for limit, _ in limits.get(code, set())}
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        drawn = {Decimal(str(step["value"])) for step in steps if step["value"] is not None}
        assert drawn == expected, f"{panel['title']}: thresholds {drawn}, alarm limits {expected}"
        style = panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"]
        assert style == ("dashed" if expected else "off"), panel["title"]
    # Every vital with a default alarm limit has its panel, and so has the weight.
    assert set(limits) | {WEIGHT_GAIN.code} <= shown
