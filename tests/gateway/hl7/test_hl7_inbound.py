"""The platform's MLLP endpoint on SQLite and PostgreSQL: every message is stored raw before
its ACK, a resend gets the stored ACK and is not processed twice, ADT registers, updates,
discharges and merges patients, ORU^R01 becomes observations of a known patient, an unknown
patient is AE (ERR 204) and other messages AR; a `tryggheim hl7 listen` process does the same.

Accept mode (MSH-15 AL): CA once the row is stored, processing afterwards in arrival order with
its outcome on the row (an unknown patient: CA, then state error with ERR 204 in the
application ACK), CR for what the header alone refuses, CE when the store fails; many
connections are stored together (group commit), and rows a stop left unprocessed are processed
at the next start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from chain import until
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from tlsutil import make_test_ca

from gateway.hl7.inbound.apply import HL7_GATEWAY, MessageApplier
from gateway.hl7.inbound.service import Hl7Receiver, screen, serve_hl7
from gateway.observability import PlatformMetrics
from gateway.records.models import Hl7Inbound, Hl7State, ObservationRow, Patient
from gateway.records.store import RecordStore
from gateway.settings import Hl7ListenSettings
from hl7.ack import Ack, AckCode, parse_ack
from hl7.errors import MessageError
from hl7.inbound import InboundMessage
from hl7.message import parse_message, read_header
from hl7.mllp import MLLPClient, MLLPDecoder, MLLPServer, encode_frame
from tryggheim.apps.broker import find_free_port

KARI = "15076500565"
OLA = "01014090011"


#: MSH-15/16: original mode, accept mode (accept ACK only), application ACK only.
ORIGINAL, ACCEPT, APPLICATION = "|", "AL|NE", "NE|AL"


def adt(
    event: str,
    control_id: str,
    national_id: str,
    name: str,
    extra: str = "",
    *,
    modes: str = ORIGINAL,
) -> bytes:
    return (
        f"MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^{event}|{control_id}|P|"
        f"2.5|||{modes}|NOR|8859/1\r"
        f"EVN|{event}|20250301115930+0100\r"
        f"PID|1||{national_id}^^^NOR^NNNOR||{name}||19650715|F\r{extra}"
    ).encode("iso-8859-1")


def oru(control_id: str, national_id: str, systolic: str, *, modes: str = APPLICATION) -> bytes:
    return (
        "MSH|^~\\&|AHD^0123456789ABCDEF^EUI-64|Continua|TRYGGHEIM|BAERUM|20250301081630+0100||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.6|||{modes}||UNICODE UTF-8\n"
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


@contextlib.asynccontextmanager
async def serving(store: RecordStore, receiver: Hl7Receiver | None = None) -> AsyncIterator[int]:
    """The endpoint (with ``receiver``, else the default one) on a free port."""
    listening: asyncio.Future[MLLPServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_hl7(store, Hl7ListenSettings(port=0), receiver=receiver, started=listening.set_result)
    )
    try:
        server = await asyncio.wait_for(listening, 10)
        yield server.port
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def endpoint(store: RecordStore) -> AsyncIterator[int]:
    async with serving(store) as port:
        yield port


async def inbound_rows(store: RecordStore) -> dict[str, Hl7Inbound]:
    """Every stored message by MSH-10."""
    async with store.session() as s:
        return {r.control_id or "": r for r in await s.scalars(select(Hl7Inbound))}


async def processed(store: RecordStore, *control_ids: str) -> bool:
    rows = await inbound_rows(store)
    return all(c in rows and rows[c].state != "received" for c in control_ids)


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
    # MSH-15 NE, MSH-16 AL: no accept ACK asked for, so the application ACK answers.
    assert unknown.code is AckCode.AE
    assert unknown.errors[0].code == "204" and KARI in unknown.text

    assert (await send(endpoint, adt("A04", "M1", KARI, "Ødegård^Kari"))).accepted
    stored = await send(endpoint, oru("O2", KARI, "120.50"))
    assert stored.code is AckCode.AA
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
        "tryggheim.apps.cli",
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
        # A measurement for her: stored, its alarm rules evaluated (the process has the book).
        assert (await send(port, oru("M2", KARI, "141"))).accepted
    finally:
        listen.terminate()
        await listen.wait()
    listed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tryggheim.apps.cli",
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


# --- accept mode: CA once stored, processed afterwards ---


async def test_accept_mode_is_answered_ca_once_stored_and_processed_afterwards(
    store: RecordStore,
) -> None:
    # The processor waits for a pause of 2 s in arrivals: the CA comes before processing.
    at = datetime(2026, 11, 22, 21, 30, 15, 123456, tzinfo=UTC)
    receiver = Hl7Receiver(store, quiet_s=2.0, defer_s=2.0, clock=lambda: at)
    async with serving(store, receiver) as port:
        message = adt("A01", "C1", KARI, "Ødegård^Kari", modes=ACCEPT)
        answer = await exchange(port, message)
        ca = parse_ack(answer)
        assert (ca.code, ca.acked_control_id, ca.errors) == (AckCode.CA, "C1", ())
        row = (await inbound_rows(store))["C1"]
        assert (row.raw, row.ack, row.ack_code) == (message, answer, "CA")
        assert (row.state, row.application_ack, row.processed_at) == ("received", None, None)
        # The writer's own SQLite statements store times as the ORM reads them back.
        assert row.received_at == at and row.received_at.utcoffset() is not None
        assert KARI not in await patients(store)

        await until(lambda: processed(store, "C1"), what="processing")
    row = (await inbound_rows(store))["C1"]
    kari = (await patients(store))[KARI]
    assert (row.state, row.patient_id, row.ack) == ("accepted", kari.id, answer)
    assert row.detail == "ADT^A01: create_or_update" and row.processed_at is not None
    assert row.application_ack is not None
    application = parse_ack(row.application_ack)
    assert (application.code, application.acked_control_id) == (AckCode.AA, "C1")
    assert (receiver.stats.stored, receiver.stats.accepted) == (1, 1)


async def test_a_resend_in_accept_mode_gets_the_same_ca_and_is_processed_once(
    store: RecordStore, endpoint: int
) -> None:
    message = adt("A01", "C1", KARI, "Ødegård^Kari", modes=ACCEPT)
    # The resend comes before the first copy is processed, over another connection.
    first, early = await asyncio.gather(exchange(endpoint, message), exchange(endpoint, message))
    assert first == early and parse_ack(first).code is AckCode.CA
    await until(lambda: processed(store, "C1"), what="processing")
    # Changed in between: a second processing of the resend would undo this.
    assert (await send(endpoint, adt("A08", "C2", KARI, "Hansen^Kari", modes=ACCEPT))).accepted
    await until(lambda: processed(store, "C2"), what="processing")
    assert await exchange(endpoint, message) == first
    await asyncio.sleep(0.3)  # time for a (wrong) second processing
    assert (await patients(store))[KARI].family_name == "Hansen"
    assert sorted(await inbound_rows(store)) == ["C1", "C2"]


async def test_an_unknown_patient_in_accept_mode_is_ca_then_an_error_on_the_row(
    store: RecordStore, endpoint: int
) -> None:
    ca = await send(endpoint, oru("O1", KARI, "120.50", modes=ACCEPT))
    assert (ca.code, ca.errors) == (AckCode.CA, ())
    await until(lambda: processed(store, "O1"), what="processing")
    row = (await inbound_rows(store))["O1"]
    assert (row.state, row.ack_code, row.patient_id) == ("error", "CA", None)
    assert row.detail is not None and KARI in row.detail and "not known" in row.detail
    assert row.application_ack is not None
    application = parse_ack(row.application_ack)
    assert (application.code, application.acked_control_id) == (AckCode.AE, "O1")
    assert [(e.code, e.location) for e in application.errors] == [("204", "PID^1^3")]


async def test_what_the_header_refuses_in_accept_mode_is_cr(
    store: RecordStore, endpoint: int
) -> None:
    siu = b"MSH|^~\\&|X|Y|TRYGGHEIM|B|20250301120000+0100||SIU^S12|S1|P|2.5|||AL|NE\rSCH|1\r"
    refused = await send(endpoint, siu)
    assert (refused.code, refused.errors[0].code, refused.errors[0].location) == (
        AckCode.CR,
        "200",
        "MSH^1^9",
    )
    newer = adt("A01", "V1", KARI, "Ødegård^Kari", modes=ACCEPT).replace(b"|2.5|", b"|2.9|")
    assert [(e.code, e.location) for e in (await send(endpoint, newer)).errors] == [
        ("203", "MSH^1^12")
    ]
    event = await send(endpoint, adt("A02", "E1", KARI, "Ødegård^Kari", modes=ACCEPT))
    assert (event.code, event.errors[0].code) == (AckCode.CR, "201")
    # Without MSH-10 a resend could not be recognised: no CA without it.
    nameless = await exchange(endpoint, adt("A01", "", KARI, "Ødegård^Kari", modes=ACCEPT))
    assert [(e.code, e.location) for e in parse_ack(nameless).errors] == [("101", "MSH^1^10")]

    rows = await inbound_rows(store)
    assert {c: (r.state, r.ack_code, r.application_ack) for c, r in rows.items()} == {
        "S1": ("rejected", "CR", None),
        "V1": ("rejected", "CR", None),
        "E1": ("rejected", "CR", None),
        "": ("rejected", "CR", None),
    }
    # A resend of a refused message gets the same CR; nothing is processed, nothing added.
    assert await exchange(endpoint, siu) == rows["S1"].ack
    assert await patients(store) == {}


async def test_a_message_that_cannot_be_stored_is_ce_and_its_resend_is_ca(
    store: RecordStore, endpoint: int
) -> None:
    message = adt("A01", "C1", KARI, "Ødegård^Kari", modes=ACCEPT)
    async with store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE hl7_inbound RENAME TO hl7_inbound_away"))
    try:
        not_stored = await send(endpoint, message)
    finally:
        async with store.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE hl7_inbound_away RENAME TO hl7_inbound"))
    assert (not_stored.code, not_stored.errors[0].code) == (AckCode.CE, "207")
    assert "send it again" in not_stored.text
    assert (await send(endpoint, message)).code is AckCode.CA
    await until(lambda: processed(store, "C1"), what="processing")
    assert KARI in await patients(store)


async def test_many_connections_are_all_acknowledged_and_stored_together(
    store: RecordStore,
) -> None:
    receiver = Hl7Receiver(store)
    connections, each = 16, 8
    async with serving(store, receiver) as port:
        await send(port, adt("A01", "REG", KARI, "Ødegård^Kari"))

        async def sender(n: int) -> list[AckCode]:
            async with MLLPClient("127.0.0.1", port) as client:
                messages = [oru(f"O{n}-{k}", KARI, f"{120 + k}", modes=ACCEPT) for k in range(each)]
                return [(await client.send(m.decode(), 30)).code for m in messages]

        codes = await asyncio.gather(*(sender(n) for n in range(connections)))
        assert codes == [[AckCode.CA] * each] * connections
        names = [f"O{n}-{k}" for n in range(connections) for k in range(each)]
        await until(lambda: processed(store, *names), timeout=60, what="processing")
    rows = await inbound_rows(store)
    assert {rows[c].state for c in names} == {"accepted"}
    async with store.session() as s:
        stored_values = await s.scalar(select(func.count()).select_from(ObservationRow))
    assert stored_values == connections * each
    # Group commit: the messages of many connections went into each transaction.
    assert receiver.stats.stored == 1 + connections * each
    assert receiver.stats.store_batches < receiver.stats.stored / 2


async def test_rows_left_unprocessed_are_processed_at_start_in_order(store: RecordStore) -> None:
    # What a stop between storing and processing leaves: an accept-mode A01 (answered CA) and
    # an original-mode A08 whose sender got no answer yet.
    admit = adt("A01", "L1", KARI, "Ødegård^Kari", modes=ACCEPT)
    update = adt("A08", "L2", KARI, "Hansen^Kari")
    async with store.session() as s:
        for control_id, raw, ack in [("L1", admit, b"MSH|...CA"), ("L2", update, None)]:
            s.add(
                Hl7Inbound(
                    tenant_id="default",
                    sender="DIPS|AHUS",
                    control_id=control_id,
                    message_type="ADT",
                    peer="127.0.0.1:1",
                    received_at=datetime.now(UTC),
                    raw=raw,
                    state="received",
                    ack=ack,
                    ack_code="CA" if ack else None,
                )
            )
    async with serving(store) as port:
        await until(lambda: processed(store, "L1", "L2"), what="processing")
        rows = await inbound_rows(store)
        # The A08's answer is its application ACK, given to its resend; not processed again.
        assert rows["L2"].ack == rows["L2"].application_ack and rows["L2"].ack_code == "AA"
        assert await exchange(port, update) == rows["L2"].ack
    assert (rows["L1"].state, rows["L2"].state) == ("accepted", "accepted")
    assert rows["L1"].ack == b"MSH|...CA"  # what the sender was told stays
    assert (await patients(store))[KARI].family_name == "Hansen"


async def test_accept_mode_messages_are_applied_in_the_order_received(
    store: RecordStore,
) -> None:
    receiver = Hl7Receiver(store, quiet_s=0.5, defer_s=0.5)
    async with serving(store, receiver) as port:
        # Over two connections, each sent after the CA of the one before.
        assert (await send(port, adt("A01", "C1", KARI, "Ødegård^Kari", modes=ACCEPT))).accepted
        assert (await send(port, adt("A08", "C2", KARI, "Hansen^Kari", modes=ACCEPT))).accepted
        assert (await send(port, adt("A08", "C3", KARI, "Berg^Kari", modes=ACCEPT))).accepted
        # An original-mode message is processed after everything stored before it: the
        # patient its A01 registers is known by then.
        reading = await send(port, oru("O1", KARI, "131", modes=ORIGINAL))
        assert (reading.code, reading.errors) == (AckCode.AA, ())
    assert (await patients(store))[KARI].family_name == "Berg"
    rows = await inbound_rows(store)
    assert [rows[c].state for c in ("C1", "C2", "C3", "O1")] == ["accepted"] * 4


async def test_odd_headers_never_stop_the_endpoint(store: RecordStore, endpoint: int) -> None:
    odd = [
        # NUL in the sender and MSH-10 (PostgreSQL text cannot hold it)
        b"MSH|^~\\&|D\x00PS|AHUS|T|B|20250301||ADT^A01|N\x001|P|2.5|||AL|NE\rPID|1\r",
        # MSH-10 far over the column's 200 characters
        b"MSH|^~\\&|DIPS|AHUS|T|B|20250301||ADT^A08|" + b"9" * 5000 + b"|P|2.5|||AL|NE\rPID|1\r",
        # MSH-15 ER / SU / "" / lower case: an answer to each
        b"MSH|^~\\&|DIPS|AHUS|T|B|20250301||ADT^A08|E1|P|2.5|||ER\rPID|1\r",
        b"MSH|^~\\&|DIPS|AHUS|T|B|20250301||ADT^A08|E2|P|2.5|||SU|AL\rPID|1\r",
        b'MSH|^~\\&|DIPS|AHUS|T|B|20250301||ADT^A08|E3|P|2.5|||""\rPID|1\r',
        b"MSH|^~\\&|DIPS|AHUS|T|B|20250301||ADT^A08|E4|P|2.5|||al\rPID|1\r",
    ]
    answers = [parse_ack(await exchange(endpoint, message)) for message in odd]
    assert [a.code.enhanced for a in answers] == [True, True, True, True, False, True]
    assert (await send(endpoint, adt("A01", "M1", KARI, "Ødegård^Kari", modes=ACCEPT))).accepted
    odd_ids = ("M1", "E1", "E2", "E3", "E4", "N\N{REPLACEMENT CHARACTER}1")
    await until(lambda: processed(store, *odd_ids), what="processing")
    assert KARI in await patients(store)


@given(st.binary(max_size=300))
def test_screen_fuzz_any_readable_header(data: bytes) -> None:
    """The header check reads anything the server could parse: it passes, or refuses with a
    reject (CR/AR), in either mode."""
    header = read_header(b"MSH|^~\\&|" + data)
    if header is None:
        return
    for accept_mode in (True, False):
        try:
            screen(header, accept_mode=accept_mode)
        except MessageError as exc:
            assert exc.reject


def test_screen_says_what_processing_would() -> None:
    adt_v23 = parse_message("MSH|^~\\&|A|B|C|D|20250301||ADT|M1|P|2.3\rEVN|A08\rPID|1\r")
    screen(adt_v23, accept_mode=True)  # the event from EVN-1, as v2.3 senders name it
    with pytest.raises(MessageError) as refused:
        screen(parse_message("MSH|^~\\&|A|B|C|D|20250301||ORU^R30|M1|P|2.6"), accept_mode=False)
    assert (refused.value.code, refused.value.location) == (201, "MSH^1^9")
    # Content is the processing's business (AE on the row, not CR).
    screen(parse_message("MSH|^~\\&|A|B|C|D|20250301||ADT^A01|M1|P|2.5"), accept_mode=True)


async def test_a_bug_in_processing_costs_that_message_only(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault of ours (not of the message, not of the store) while applying one message is
    logged, counted and answered AE with ERR 207; the endpoint goes on with the next."""
    applying = MessageApplier.apply

    async def faulty(
        self: MessageApplier, s: AsyncSession, decoded: InboundMessage, row_id: int
    ) -> tuple[int, str]:
        if decoded.control_id == "BUG":
            raise RuntimeError("a bug in the applier")
        return await applying(self, s, decoded, row_id)

    monkeypatch.setattr(MessageApplier, "apply", faulty)
    receiver = Hl7Receiver(store)
    async with serving(store, receiver) as port:
        failed = await send(port, adt("A01", "BUG", KARI, "Ødegård^Kari"))
        assert (failed.code, failed.errors[0].code) == (AckCode.AE, "207")
        assert "failed to process" in failed.text
        assert (await send(port, adt("A01", "OK", KARI, "Ødegård^Kari"))).code is AckCode.AA
    rows = await inbound_rows(store)
    assert (rows["BUG"].state, rows["OK"].state) == ("error", "accepted")
    assert (receiver.stats.errors, receiver.stats.accepted) == (1, 1)


# --- keep the unusual but legal (issue 14) ---

FH_NUMMER = "81212121223"  # felles hjelpenummer: first digit 8, mod-11 control digits


async def test_unusual_but_legal_values_are_kept_warned_and_counted(store: RecordStore) -> None:
    """A national code for sex (PID-8 ``1`` from a Norwegian sender), ``FEMALE``, an unknown
    code, a patient known only by her FH-nummer, an ORU with one OBX of an unknown unit: each
    message is accepted (AA) with an ERR of severity W naming what was altered or left out; the
    row says so, and the alterations are counted by reason in /metrics."""
    receiver = Hl7Receiver(store)
    async with serving(store, receiver) as port:
        national_code = adt("A01", "U1", FH_NUMMER, "Nyfødt^Gutt").replace(
            b"|19650715|F\r", b"|19650715|1\r"
        )
        spelled = adt("A01", "U2", KARI, "Ødegård^Kari").replace(
            b"|19650715|F\r", b"|19650715|FEMALE\r"
        )
        unknown = adt("A01", "U3", OLA, "Nordmann^Ola").replace(b"|19650715|F\r", b"|19650715|X\r")
        answers = [await send(port, m) for m in (national_code, spelled, unknown)]
        two_obx = oru("U4", KARI, "128") + (
            b"OBX|2|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.0.1.2|80|999^NO_SUCH_UNIT^MDC"
            b"|||||R|||20250301081500+0100\n"
        )
        answers.append(await send(port, two_obx))
    assert [(a.code, a.acked_control_id) for a in answers] == [
        (AckCode.AA, "U1"), (AckCode.AA, "U2"), (AckCode.AA, "U3"), (AckCode.AA, "U4"),
    ]  # fmt: skip
    assert [[(e.severity, e.location, e.code) for e in a.errors] for a in answers] == [
        [("W", "PID^1^8", "103")],
        [("W", "PID^1^8", "103")],
        [("W", "PID^1^8", "103")],
        [("W", "OBX^2^6", "103")],
    ]
    registered = await patients(store)
    assert (registered[FH_NUMMER].sex, registered[KARI].sex, registered[OLA].sex) == ("M", "F", "U")
    rows = await inbound_rows(store)
    assert "PID^1^8: sex '1' read as M" in (rows["U1"].detail or "")
    assert "stored as U" in (rows["U3"].detail or "")
    assert "OBX^2^6" in (rows["U4"].detail or "")
    assert receiver.stats.altered == {
        "sex_code_list_3101": 1,
        "sex_spelling": 1,
        "sex_not_understood": 1,
        "observation_left_out": 1,
    }
    metrics = PlatformMetrics(
        {"hl7_inbound": lambda: [receiver.stats], "hl7_mllp": lambda: [receiver.connection_stats]},
        store,
    )
    text = metrics.render().decode()
    assert 'tryggheim_hl7_inbound_altered_total{reason="sex_spelling"} 1.0' in text
    assert 'tryggheim_hl7_inbound_altered_total{reason="observation_left_out"} 1.0' in text
    # the endpoint's connection counters too (frames, busy, deadlines missed...)
    assert "tryggheim_hl7_mllp_frames_total 4.0" in text


async def test_a_large_message_being_processed_does_not_hold_up_the_next_ca(
    store: RecordStore,
) -> None:
    """A 2.4 MB ADT (600,000 repetitions) takes a second or more to decode: it is decoded before
    the processor takes the store's write turn, so a message arriving meanwhile is stored and
    answered CA at once."""
    receiver = Hl7Receiver(store, quiet_s=0.0)
    big = adt("A01", "BIG", KARI, "N^K~" * 600_000)
    async with serving(store, receiver) as port:
        loop = asyncio.get_running_loop()
        answered = asyncio.create_task(send(port, big))
        await until(lambda: receiver.stats.stored == 1, what="the large message stored")
        start = loop.time()
        ca = await send(port, adt("A08", "NEXT", KARI, "Ødegård^Kari", modes=ACCEPT))
        waited = loop.time() - start
        big_ack = await answered
    assert (ca.code, big_ack.code) == (AckCode.CA, AckCode.AA)
    assert waited < 0.5, f"the CA waited {waited:.2f} s"


async def test_a_message_is_parsed_once_on_its_way_in(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint's parse goes with the row to the processor, which routes it by MSH-9 and
    applies it without parsing the bytes again; rows stored before a restart are parsed from
    the store."""
    from gateway.hl7.inbound import processor

    parsed_from_store: list[bytes] = []
    parse = processor.decode_message

    def counted(raw: bytes) -> object:
        parsed_from_store.append(raw)
        return parse(raw)

    monkeypatch.setattr(processor, "decode_message", counted)
    messages = [adt("A01", "P1", KARI, "Ødegård^Kari"), oru("P2", KARI, "141")]
    messages += [adt("A08", "P3", KARI, "Hansen^Kari", modes=ACCEPT)]
    async with serving(store) as port:
        for message in messages:
            await send(port, message)
        await until(lambda: processed(store, "P1", "P2", "P3"), what="processing")
    assert parsed_from_store == []
    rows = await inbound_rows(store)
    assert [rows[c].state for c in ("P1", "P2", "P3")] == ["accepted"] * 3
    assert (await patients(store))[KARI].family_name == "Hansen"

    left = adt("A08", "P4", KARI, "Berg^Kari")
    async with store.session() as s:
        s.add(
            Hl7Inbound(
                tenant_id="default",
                sender="DIPS|AHUS",
                control_id="P4",
                message_type="ADT",
                peer="127.0.0.1:1",
                received_at=datetime.now(UTC),
                raw=left,
                state="received",
            )
        )
    async with serving(store):
        await until(lambda: processed(store, "P4"), what="processing at start")
    assert parsed_from_store == [left]
    assert (await patients(store))[KARI].family_name == "Berg"
