"""Operations endpoints and TLS of a running platform (real Mosquitto, SQLite): readiness
follows the ingest connection, /metrics counts what ingest did and what the gateways reported,
the alarm latency histogram fills when an alarm is raised; HTTPS and MLLP over TLS to the GP."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from access import auth_settings
from chain import until
from cryptography import x509
from delivery import GATEWAY, mqtt_settings, running
from prometheus_client.parser import text_string_to_metric_families
from servers import BrokerFixture
from tlsutil import make_test_ca

from gateway.observability import PlatformProblem, StoreSnapshot, platform_problems
from gateway.records.models import DEFAULT_TENANT
from gateway.registry.service import Registry
from gateway.service import Platform
from gateway.settings import GatewaySettings, Hl7Settings
from hl7.ack import AckCode, build_ack
from hl7.mllp import MLLPServer, ReceivedMessage
from tryggheim.apps.broker import TlsFiles, find_free_port
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation
from tryggheim.mqtt import MqttSession
from tryggheim.version import installed_version
from tryggheim.wire import encode_batch, obs_topic, status_topic


@pytest.fixture
async def platform(mosquitto: BrokerFixture, tmp_path: Path) -> AsyncIterator[Platform]:
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        mqtt=mqtt_settings(mosquitto, "platform"),
        http_port=find_free_port(),
        auth=auth_settings(),
        metrics_refresh_s=0.2,
    )
    service = Platform(settings)
    await service.store.migrate()
    registry = Registry(service.store)
    patient = await registry.create_patient(
        DEFAULT_TENANT, national_id="01014090011", family_name="Ødegård", given_name="Kari"
    )
    await registry.register_gateway(DEFAULT_TENANT, GATEWAY, patient.id, datetime.now(UTC))
    async with running(service.run(), "platform"):
        await until(lambda: service.started, what="the platform")
        yield service


async def test_readiness_metrics_and_alarm_latency(
    mosquitto: BrokerFixture, platform: Platform
) -> None:
    base = f"http://127.0.0.1:{platform.settings.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": True, "ingest": True}}

        async def zeros_before_anything_happened() -> bool:
            # A dashboard or alert must see 0, not a series that is missing.
            text = (await http.get("/metrics")).text
            return all(
                line in text.splitlines()
                for line in (
                    'tryggheim_gateways{state="offline"} 0.0',
                    'tryggheim_alarms_open{severity="critical"} 0.0',
                    'tryggheim_hl7_outbound_messages{state="parked"} 0.0',
                    'tryggheim_hl7_inbound_messages{state="error"} 0.0',
                    "tryggheim_record_store_up 1.0",
                    "tryggheim_ingest_connected 1.0",
                )
            )

        await until(zeros_before_anything_happened, timeout=20, what="zeros in the metrics")

        fall = Observation(
            gateway_id=GATEWAY,
            seq=1,
            device_id="hall",
            source="mqtt:zigbee2mqtt",
            code="TRY_EVT_FALL",
            value=Decimal(1),
            unit="1",
            time=datetime.now(UTC),
        )
        async with MqttSession(mqtt_settings(mosquitto, GATEWAY), "gw-metrics") as mqtt:
            await mqtt.publish(obs_topic(GATEWAY), encode_batch(GATEWAY, [fall]))
            status = (
                b'{"v": 1, "gateway_id": "gw-test", "state": "online", "outbox_depth": 42,'
                b' "input_adjustments": {"ble": {"control_solution": 2},'
                b' "zigbee2mqtt": {"wrong_type": 3, "unknown_key": 5}}}'
            )
            await mqtt.publish(status_topic(GATEWAY), status)

        async def reported() -> bool:
            text = (await http.get("/metrics")).text
            return (
                "tryggheim_gateway_outbox_depth 42.0" in text
                and 'tryggheim_alarms_open{severity="critical"} 1.0' in text
            )

        await until(reported, timeout=20, what="the metrics")
        text = (await http.get("/metrics")).text
        assert "tryggheim_ingest_observations_new_total 1.0" in text
        assert 'tryggheim_gateways{state="online"} 1.0' in text
        assert "tryggheim_alarm_latency_seconds_count 1.0" in text
        assert f'tryggheim_build_info{{version="{installed_version()}"}} 1.0' in text
        # what the edge dropped or altered, per entry point and reason (issue 14)
        adjusted = "tryggheim_edge_input_values_adjusted_total"
        assert f'{adjusted}{{reason="control_solution",source="ble"}} 2.0' in text
        assert f'{adjusted}{{reason="wrong_type",source="zigbee2mqtt"}} 3.0' in text
        # What the API refused is counted too: here one request without a token.
        assert (await http.get("/api/v1/patients")).status_code == 401
        assert "tryggheim_api_auth_failures_total 1.0" in (await http.get("/metrics")).text

        platform.workers[0].stats.connected = False
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["ingest"] is False


async def test_https_api_and_mllp_over_tls_to_the_gp(
    mosquitto: BrokerFixture, tmp_path: Path
) -> None:
    """With certificates configured, the API is HTTPS only and HL7 goes to the GP over TLS."""
    tls = make_test_ca(tmp_path / "tls")
    received: list[bytes] = []

    async def gp(message: ReceivedMessage) -> bytes:
        received.append(message.raw)
        now = datetime.now(UTC)
        return build_ack(message.message, AckCode.AA, "", now, "GP1").encode()

    trusting = ssl.create_default_context(cafile=tls.cafile)
    async with MLLPServer(gp, ssl=server_context(tls)) as gp_server:
        settings = GatewaySettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
            mqtt=mqtt_settings(mosquitto, "platform"),
            http_port=find_free_port(),
            http_tls_cert=tls.certfile,
            http_tls_key=tls.keyfile,
            auth=auth_settings(),
            hl7=Hl7Settings(tls_ca=tls.cafile, settle_s=0.2),
        )
        service = Platform(settings)
        await service.store.migrate()
        registry = Registry(service.store)
        patient = await registry.create_patient(
            DEFAULT_TENANT,
            national_id="01014090011",
            family_name="Ødegård",
            given_name="Kari",
            gp_hl7_host="localhost",
            gp_hl7_port=gp_server.port,
        )
        await registry.pair_device(
            DEFAULT_TENANT,
            device_id="C0:10:00:00:00:01",
            patient_id=patient.id,
            gateway_id=GATEWAY,
            profile=DeviceProfile.BLOOD_PRESSURE,
        )
        async with running(service.run(), "platform"):
            await until(lambda: service.started, what="the platform")
            port = settings.http_port
            async with httpx.AsyncClient(verify=trusting) as https:
                ready = await https.get(f"https://localhost:{port}/healthz")
                assert ready.status_code == 200

                async def expiries() -> dict[str, float]:
                    text = (await https.get(f"https://localhost:{port}/metrics")).text
                    return {
                        sample.labels["certificate"]: sample.value
                        for family in text_string_to_metric_families(text)
                        if family.name == "tryggheim_tls_certificate_expiry_timestamp_seconds"
                        for sample in family.samples
                    }

                # The alert on certificate expiry reads when each one runs out (from the
                # metrics' first read, which may follow the start).
                expected = {
                    name: x509.load_pem_x509_certificate(
                        path.read_bytes()
                    ).not_valid_after_utc.timestamp()
                    for name, path in (("http", tls.certfile), ("hl7_ca", tls.cafile))
                }

                async def reported() -> bool:
                    return await expiries() == expected

                await until(reported, timeout=20, what="the certificates' expiry")
            async with httpx.AsyncClient() as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get(f"http://localhost:{port}/healthz")
            cuff = Observation(
                gateway_id=GATEWAY,
                seq=1,
                device_id="C0:10:00:00:00:01",
                source="ble:2A35",
                code="MDC_PRESS_BLD_NONINV_SYS",
                value=Decimal(128),
                unit="mm[Hg]",
                time=datetime.now(UTC),
            )
            await service.store.commit_batch(GATEWAY, [cuff], datetime.now(UTC))
            service.hl7.notify()
            await until(lambda: bool(received), timeout=20, what="the ORU^R01 over TLS")
    assert b"ORU^R01" in received[0]


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.certfile, tls.keyfile)
    return context


def test_what_makes_the_platform_degraded_for_the_care_teams() -> None:
    """The coordinators' banner follows the readiness checks and the same thresholds as IT's
    alerts (dashboards/prometheus/alerts.yml)."""
    read = datetime(2026, 12, 6, tzinfo=UTC)
    healthy = StoreSnapshot(
        gateways={"online": 95, "offline": 5}, record_store_up=True, read_at=read
    )
    assert platform_problems({"database": True, "ingest": True}, healthy) == []
    assert platform_problems({}, None) == []  # nothing known yet: no alarm of the alarm system
    bad = StoreSnapshot(
        gateways={"online": 40, "offline": 10},
        hl7_outbound={"pending": 1001},
        timeseries_backlog=10_001,
        record_store_up=False,
        read_at=read,
    )
    assert platform_problems({"database": True, "ingest": False}, bad) == [
        PlatformProblem.RECORD_STORE,
        PlatformProblem.INGEST,
        PlatformProblem.GATEWAYS_OFFLINE,
        PlatformProblem.HL7_OUTBOUND,
        PlatformProblem.TIMESERIES,
    ]
    # Four homes offline is each one's own alarm for her nurse, not a platform problem.
    few = StoreSnapshot(gateways={"offline": 4}, record_store_up=True, read_at=read)
    assert platform_problems({}, few) == []
