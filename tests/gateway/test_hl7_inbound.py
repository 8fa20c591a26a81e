"""The platform's MLLP endpoint on SQLite and PostgreSQL: every message is stored raw before
its ACK, a resend gets the stored ACK and is not processed twice, ADT registers, updates,
discharges and merges patients, ORU^R01 becomes observations of a known patient, an unknown
patient is AE (ERR 204) and other messages AR; a `tryggheim hl7 listen` process does the same."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.hl7_inbound import HL7_GATEWAY, serve_hl7
from gateway.models import Hl7Inbound, Hl7State, ObservationRow, Patient
from gateway.settings import Hl7ListenSettings
from gateway.store import RecordStore
from hl7.ack import Ack, AckCode, parse_ack
from hl7.mllp import MLLPClient, MLLPDecoder, MLLPServer, encode_frame
from tryggheim.broker import find_free_port
from tryggheim.tlsutil import make_test_ca

KARI = "15076500565"
OLA = "01014090011"


def adt(event: str, control_id: str, national_id: str, name: str, extra: str = "") -> bytes:
    return (
        f"MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^{event}|{control_id}|P|"
        f"2.5|||||NOR|8859/1\r"
        f"EVN|{event}|20250301115930+0100\r"
        f"PID|1||{national_id}^^^NOR^NNNOR||{name}||19650715|F\r{extra}"
    ).encode("iso-8859-1")


def oru(control_id: str, national_id: str, systolic: str) -> bytes:
    return (
        "MSH|^~\\&|AHD^0123456789ABCDEF^EUI-64|Continua|TRYGGHEIM|BAERUM|20250301081630+0100||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.6|||NE|AL||UNICODE UTF-8\n"
        f"PID|||{national_id}^^^NOR^NNNOR||Ødegård^Kari\n"
        "OBR|1|X^AHD||182777000^monitoring of patient^SNOMED-CT|||20250301081500+0100\n"
        f"OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.1.1|{systolic}|266016^MDC_DIM_MMHG^MDC"
        "|||||R|||20250301081500+0100||||1234567890ABCDEF^^1234567890ABCDEF^EUI-64\n"
    ).encode()


async def exchange(port: int, data: bytes) -> bytes:
    """One frame over a fresh connection; the raw reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(encode_frame(data))
        await writer.drain()
        decoder = MLLPDecoder()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, "the endpoint closed the connection without an answer"
            if frames := decoder.feed(chunk):
                return frames[0]
    finally:
        writer.close()


async def send(port: int, data: bytes) -> Ack:
    return parse_ack(await exchange(port, data))


@pytest.fixture
async def endpoint(store: RecordStore) -> AsyncIterator[int]:
    listening: asyncio.Future[MLLPServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_hl7(store, Hl7ListenSettings(port=0), started=listening.set_result)
    )
    server = await asyncio.wait_for(listening, 10)
    yield server.port
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def patients(store: RecordStore) -> dict[str, Patient]:
    async with store.session() as s:
        return {p.national_id: p for p in await s.scalars(select(Patient))}


async def test_admit_update_discharge_in_iso_8859_1(store: RecordStore, endpoint: int) -> None:
    admitted = await send(endpoint, adt("A01", "M1", KARI, "Ødegård^Kari"))
    assert (admitted.code, admitted.acked_control_id) == (AckCode.AA, "M1")
    kari = (await patients(store))[KARI]
    assert (kari.family_name, kari.given_name, kari.sex) == ("Ødegård", "Kari", "F")
    assert kari.birth_date is not None and kari.birth_date.isoformat() == "1965-07-15"

    assert (await send(endpoint, adt("A08", "M2", KARI, "Ødegård-Berg^Kari"))).accepted
    assert (await patients(store))[KARI].family_name == "Ødegård-Berg"
    assert (await send(endpoint, adt("A03", "M3", KARI, ""))).accepted
    assert (await patients(store))[KARI].discharged_at is not None


async def test_stored_raw_before_the_ack_and_a_resend_is_not_processed_twice(
    store: RecordStore, endpoint: int
) -> None:
    message = adt("A01", "M1", KARI, "Ødegård^Kari")
    first = await exchange(endpoint, message)
    # Changed in between: a second processing of the resend would undo this.
    assert (await send(endpoint, adt("A08", "M2", KARI, "Hansen^Kari"))).accepted
    again = await exchange(endpoint, message)
    assert again == first
    assert (await patients(store))[KARI].family_name == "Hansen"
    async with store.session() as s:
        row = await s.scalar(select(Hl7Inbound).where(Hl7Inbound.control_id == "M1"))
        count = await s.scalar(select(func.count()).select_from(Hl7Inbound))
    assert row is not None and row.raw == message and row.ack == first
    assert (row.state, row.ack_code, count) == ("accepted", "AA", 2)


async def test_oru_for_a_known_patient_is_stored_and_an_unknown_patient_is_ae(
    store: RecordStore, endpoint: int
) -> None:
    unknown = await send(endpoint, oru("O1", KARI, "120.50"))
    assert unknown.code is AckCode.CE  # the sender asked for enhanced mode (MSH-15/16)
    assert unknown.errors[0].code == "204" and KARI in unknown.text

    assert (await send(endpoint, adt("A04", "M1", KARI, "Ødegård^Kari"))).accepted
    stored = await send(endpoint, oru("O2", KARI, "120.50"))
    assert stored.code is AckCode.CA
    async with store.session() as s:
        (row,) = await s.scalars(select(ObservationRow))
    kari = (await patients(store))[KARI]
    assert (row.patient_id, row.value, row.unit, row.gateway_id) == (
        kari.id,
        "120.50",
        "mm[Hg]",
        HL7_GATEWAY,
    )
    assert row.device_id == "1234567890ABCDEF" and row.source == "hl7:ORU^R01"
    assert row.hl7_state == Hl7State.NOT_APPLICABLE  # never echoed back out over HL7
    assert row.time == datetime(2025, 3, 1, 7, 15, tzinfo=UTC)


async def test_merge_moves_the_observations_to_the_surviving_patient(
    store: RecordStore, endpoint: int
) -> None:
    for n, (national_id, name) in enumerate([(KARI, "Ødegård^Kari"), (OLA, "Ødegård^K")]):
        assert (await send(endpoint, adt("A01", f"A{n}", national_id, name))).accepted
    assert (await send(endpoint, oru("O1", OLA, "131"))).accepted
    merge = adt("A40", "M40", KARI, "Ødegård^Kari", extra=f"MRG|{OLA}^^^NOR^NNNOR\r")
    assert (await send(endpoint, merge)).accepted
    registered = await patients(store)
    assert registered[OLA].merged_into_id == registered[KARI].id
    async with store.session() as s:
        (row,) = await s.scalars(select(ObservationRow))
    assert row.patient_id == registered[KARI].id
    # Later messages about the old number reach the surviving record.
    assert (await send(endpoint, oru("O2", OLA, "128"))).accepted
    async with store.session() as s:
        owners = set(await s.scalars(select(ObservationRow.patient_id)))
    assert owners == {registered[KARI].id}


async def test_other_messages_are_rejected_and_garbage_never_stops_the_endpoint(
    store: RecordStore, endpoint: int
) -> None:
    siu = b"MSH|^~\\&|X|Y|TRYGGHEIM|B|20250301120000+0100||SIU^S12|S1|P|2.5\rSCH|1\r"
    refused = await send(endpoint, siu)
    assert refused.code is AckCode.AR and refused.errors[0].code == "200"
    no_id = await send(endpoint, adt("A01", "N1", "123", "Nobody^N"))
    assert no_id.code is AckCode.AE and no_id.errors[0].location.startswith("PID")
    assert (await send(endpoint, adt("A01", "M1", KARI, "Ødegård^Kari"))).accepted


async def test_hl7_listen_and_patients_list_on_the_command_line(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    port = find_free_port()
    listen = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryggheim.cli",
        "hl7",
        "listen",
        "--port",
        str(port),
        "--database",
        database,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert listen.stdout is not None
        line = await asyncio.wait_for(listen.stdout.readline(), 30)
        assert line.decode().strip().endswith(f":{port}")
        assert (await send(port, adt("A01", "M1", KARI, "Ødegård^Kari"))).accepted
    finally:
        listen.terminate()
        await listen.wait()
    listed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryggheim.cli",
        "patients",
        "list",
        "--json",
        "--database",
        database,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await listed.communicate()
    assert listed.returncode == 0
    (kari,) = json.loads(out)
    assert (kari["national_id"], kari["family_name"], kari["birth_date"]) == (
        KARI,
        "Ødegård",
        "1965-07-15",
    )


async def test_the_endpoint_speaks_mllp_over_tls(store: RecordStore, tmp_path: Path) -> None:
    tls = make_test_ca(tmp_path / "tls")
    settings = Hl7ListenSettings(port=0, tls_cert=tls.certfile, tls_key=tls.keyfile)
    listening: asyncio.Future[MLLPServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_hl7(store, settings, started=listening.set_result))
    try:
        server = await asyncio.wait_for(listening, 10)
        trusting = ssl.create_default_context(cafile=tls.cafile)
        async with MLLPClient(
            "127.0.0.1", server.port, ssl=trusting, server_hostname="localhost"
        ) as client:
            ack = await client.send(adt("A01", "T1", KARI, "Ødegård^Kari").decode("latin-1"), 10)
        assert ack.accepted
        # Plain MLLP on the TLS port gets no answer.
        with pytest.raises((AssertionError, ConnectionError, asyncio.IncompleteReadError)):
            await exchange(server.port, adt("A01", "T2", KARI, "Ødegård^Kari"))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert KARI in await patients(store)
