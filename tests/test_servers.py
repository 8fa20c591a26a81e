"""One real check per server fixture, and the broker's own guarantees (ACL, restart, errors)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from playwright.async_api import Page
from servers import (
    GATEWAY_USER,
    PLATFORM_USER,
    BrokerFixture,
    MqttProbe,
    VictoriaMetricsServer,
    export_series,
    poll_until,
    serving_html,
)

from tryggheim.apps.broker import BrokerStartError, MosquittoServer

OWN_DOWN = f"tryggheim/v1/{GATEWAY_USER}/down/ack"
OTHER_DOWN = "tryggheim/v1/gw-other/down/ack"


def test_mosquitto_credentials_and_shared_subscription(mosquitto: BrokerFixture) -> None:
    intruder = MqttProbe(mosquitto, GATEWAY_USER, "intruder", password="wrong")
    assert intruder.connect().is_failure

    platform = MqttProbe(mosquitto, PLATFORM_USER, "ingest-1")
    assert not platform.connect().is_failure
    assert not platform.subscribe("$share/ingest/tryggheim/v1/+/up/#").is_failure
    gateway = MqttProbe(mosquitto, GATEWAY_USER, GATEWAY_USER)
    assert not gateway.connect().is_failure

    # Denied first, allowed second: one client's messages arrive in order, so once the second
    # is in, the first would have been too.
    gateway.publish("tryggheim/v1/gw-other/up/obs", b"forged")
    gateway.publish(f"tryggheim/v1/{GATEWAY_USER}/up/obs", b'{"seq": 1}')
    platform.pump(lambda: platform.messages, what="the gateway's observation")
    assert [(m.topic, m.payload) for m in platform.messages] == [
        (f"tryggheim/v1/{GATEWAY_USER}/up/obs", b'{"seq": 1}')
    ]
    for client in (platform, gateway):
        client.disconnect()


def test_mosquitto_gateway_reads_only_its_own_down_topics(mosquitto: BrokerFixture) -> None:
    gateway = MqttProbe(mosquitto, GATEWAY_USER, GATEWAY_USER)
    gateway.connect()
    # Mosquitto 2.0 grants the subscription and filters what it delivers by the ACL.
    gateway.subscribe(OTHER_DOWN)
    gateway.subscribe("tryggheim/v1/+/down/#")
    gateway.subscribe(OWN_DOWN)
    platform = MqttProbe(mosquitto, PLATFORM_USER, "platform-1")
    platform.connect()

    platform.publish(OTHER_DOWN, b"not yours")
    platform.publish(OWN_DOWN, b'{"seq": 7}')
    gateway.pump(lambda: gateway.messages, what="the gateway's own ack")
    assert [(m.topic, m.payload) for m in gateway.messages] == [(OWN_DOWN, b'{"seq": 7}')]
    for client in (platform, gateway):
        client.disconnect()


def test_mosquitto_restart_keeps_queued_qos1_message(mosquitto: BrokerFixture) -> None:
    gateway = MqttProbe(
        mosquitto, GATEWAY_USER, GATEWAY_USER, clean_start=False, session_expiry=3600
    )
    gateway.connect()
    gateway.subscribe(OWN_DOWN, qos=1)
    gateway.disconnect()

    platform = MqttProbe(mosquitto, PLATFORM_USER, "platform-1")
    platform.connect()
    platform.publish(OWN_DOWN, b'{"seq": 42}', qos=1)
    platform.disconnect()

    old_pid = mosquitto.server.pid
    mosquitto.server.restart()
    assert mosquitto.server.pid not in (None, old_pid)

    gateway.connect()
    assert gateway.session_present
    gateway.pump(lambda: gateway.messages, what="the message queued before the restart")
    assert [(m.topic, m.payload, m.qos) for m in gateway.messages] == [
        (OWN_DOWN, b'{"seq": 42}', 1)
    ]
    gateway.disconnect()


def test_mosquitto_start_error_names_the_cause(mosquitto: BrokerFixture, tmp_path: Path) -> None:
    # The fixture's port is taken, so a second broker on it cannot listen.
    clash = MosquittoServer(tmp_path / "clash", {"u": "p"}, port=mosquitto.port, start_timeout=5)
    with pytest.raises(BrokerStartError) as caught:
        clash.start()
    assert "Address already in use" in caught.value.log_tail
    assert not clash.running


def test_mosquitto_leaves_no_process(tmp_path: Path) -> None:
    with MosquittoServer(tmp_path, {"u": "p"}) as server:
        pid = server.pid
        assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_postgres_round_trip(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []  # a fresh database per test
            conn.execute(sa.text("CREATE TABLE patient (id serial PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO patient (name) VALUES (:n)"), {"n": "Åse Ødegård"})
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM patient")).scalar_one() == "Åse Ødegård"
    finally:
        engine.dispose()


def test_victoria_metrics_influx_write_and_export(victoria_metrics: VictoriaMetricsServer) -> None:
    gateway = f"gw-{uuid.uuid4().hex[:8]}"  # the server lives for the whole session
    when = datetime(2025, 3, 1, 8, 30, 15, 123000, tzinfo=UTC)
    point = (
        Point("vitals")
        .tag("gateway", gateway)
        .tag("code", "MDC_PRESS_BLD_NONINV_SYS")
        .field("value", 132.0)
        .time(when, WritePrecision.MS)
    )
    with InfluxDBClient(url=victoria_metrics.url, token="any", org="tryggheim") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="vitals", record=point)

    series = poll_until(
        lambda: export_series(victoria_metrics.url, f'vitals_value{{gateway="{gateway}"}}'),
        what="the written point in VictoriaMetrics",
    )
    assert len(series) == 1
    assert series[0]["metric"]["code"] == "MDC_PRESS_BLD_NONINV_SYS"
    assert series[0]["values"] == [132]
    assert series[0]["timestamps"] == [int(when.timestamp() * 1000)]


@pytest.mark.asyncio(loop_scope="session")
async def test_chromium_loads_a_local_page(page: Page) -> None:
    html = "<!doctype html><title>Tryggheim – Ødegård</title><h1>Hei</h1>"
    async with serving_html(html) as url:
        await page.goto(url)
        assert await page.title() == "Tryggheim – Ødegård"
        assert await page.locator("h1").inner_text() == "Hei"
