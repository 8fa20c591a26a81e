"""A costly HL7 message cannot stall the platform it runs in (issue 12): inside a running
platform (real Mosquitto, SQLite, the MLLP endpoint on), ADTs of 40,000 and 600,000 PID-5
repetitions (160 KB and 2.4 MB) are received, stored, processed and answered AA, while /healthz
keeps answering at once. Before parsing was linear and large messages were parsed off the event
loop, /healthz waited ~26 s for the first alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from access import auth_settings
from chain import until
from delivery import mqtt_settings, running
from servers import BrokerFixture

from gateway.service import Platform
from gateway.settings import GatewaySettings, Hl7ListenSettings
from hl7.ack import AckCode
from hl7.mllp import MLLPClient
from tryggheim.apps.broker import find_free_port


def _many_names(control_id: str, repetitions: int) -> str:
    return (
        f"MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^A01|{control_id}|P|2.5\r"
        f"PID|1||15076500565^^^NOR^NNNOR||{'N^K~' * repetitions}||19650715|F\r"
    )


async def test_a_costly_hl7_message_does_not_stall_health_checks(
    mosquitto: BrokerFixture, tmp_path: Path
) -> None:
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        mqtt=mqtt_settings(mosquitto, "platform"),
        http_port=find_free_port(),
        auth=auth_settings(),
        hl7_listen=Hl7ListenSettings(port=find_free_port()),
    )
    platform = Platform(settings)
    await platform.store.migrate()
    assert settings.hl7_listen is not None
    loop = asyncio.get_running_loop()
    waits: list[float] = []

    async def health_checks(http: httpx.AsyncClient) -> None:
        while True:
            start = loop.time()
            assert (await http.get("/healthz")).status_code == 200
            waits.append(loop.time() - start)
            await asyncio.sleep(0.05)

    base = f"http://127.0.0.1:{settings.http_port}"
    async with running(platform.run(), "platform"), httpx.AsyncClient(base_url=base) as http:
        await until(lambda: platform.started, what="the platform")
        async with running(health_checks(http), "health checks"):
            async with MLLPClient("127.0.0.1", settings.hl7_listen.port) as client:
                acks = [
                    await client.send(_many_names(f"BIG{n}", repetitions), timeout=60)
                    for n, repetitions in enumerate((40_000, 600_000))
                ]
            await asyncio.sleep(0.2)
    assert [a.code for a in acks] == [AckCode.AA, AckCode.AA]
    assert len(waits) > 5
    assert max(waits) < 1.0, f"/healthz waited {max(waits):.2f} s"
