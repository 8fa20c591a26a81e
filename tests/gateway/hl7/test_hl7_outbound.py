"""The outbound HL7 queue against real MLLP peers on loopback, on SQLite and PostgreSQL: strict
order per destination, retries with the same MSH-10 after AR, a timeout or a refused
connection, AE parks, one blocked destination does not hold up another; windows (several
messages per query, outcomes recorded together) that stop at a failure, let a requeued message
go first, are recorded when the platform stops, resent with the same MSH-10 after a crash, and
end when the lease is lost; ORU^R01 with abnormal flags from the care plan, and alarms reported
to an alert manager as ORU^R40."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.alarms import AlarmState
from gateway.alarms.service import AlarmService
from gateway.hl7.outbound import service as hl7_outbound
from gateway.hl7.outbound.queue_admin import (
    QueuedMessageNotFound,
    QueuedMessageNotParked,
    destination_statuses,
    requeue_parked,
)
from gateway.hl7.outbound.service import Hl7Outbound
from gateway.records.models import (
    DEFAULT_TENANT,
    AlarmRow,
    Hl7Destination,
    Hl7Message,
    Hl7MessageKind,
    Hl7MessageState,
    Hl7State,
    ObservationRow,
    Patient,
    Tenant,
)
from gateway.records.store import RecordStore
from gateway.registry.service import Registry
from gateway.settings import AlertManagerSettings, Hl7Settings
from hl7.message import format_timestamp, parse_message
from hl7.mllp import MLLPServer, ReceivedMessage
from hl7.strict import validate_strictly
from tryggheim.apps.broker import find_free_port
from tryggheim.codes import DeviceProfile
from tryggheim.domain import Observation

LATER = timedelta(minutes=1)
FAST = Hl7Settings(settle_s=0.05, ack_timeout_s=2.0, retry_after_s=0.1, retry_max_s=0.4)
#: For a peer that never answers; a loaded machine may also time out an answering peer now and
#: then, so the assertions below allow a resend anywhere (never a reordering).
IMPATIENT = FAST.model_copy(update={"ack_timeout_s": 0.3})
GATEWAY = "gw-hl7"
REPO = Path(__file__).resolve().parents[3]
_seqs = itertools.count(1)


# --- peers and helpers ----------------------------------------------------------------------


class Peer:
    """An MLLP peer that answers each message with the next reply of its script (then
    ``default``): an ACK code, or ``hang`` (no answer until :meth:`release`)."""

    def __init__(self, *script: str, default: str = "AA", port: int = 0) -> None:
        self.script = list(script)
        self.default = default
        self.received: list[str] = []
        self.messages: list[str] = []
        self.received_at: list[float] = []  # the event loop's clock
        self._released = asyncio.Event()
        self.server = MLLPServer(self._answer, port=port)

    @property
    def port(self) -> int:
        return self.server.port

    def release(self) -> None:
        self.default = "AA"
        self._released.set()

    async def __aenter__(self) -> Peer:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__(None, None, None)

    async def _answer(self, received: ReceivedMessage) -> bytes:
        control_id = received.message.control_id
        self.received.append(control_id)
        self.messages.append(received.raw.decode())
        self.received_at.append(asyncio.get_running_loop().time())
        reply = self.script.pop(0) if self.script else self.default
        if reply == "hang":
            await self._released.wait()
            reply = "AA"
        now = format_timestamp(datetime.now(UTC))
        text = f"MSA|{reply}|{control_id}|{'' if reply in ('AA', 'CA') else 'peer says no'}"
        msh = f"MSH|^~\\&|PEER|P|TRYGGHEIM|T|{now}||ACK^R01^ACK|A{control_id}|P|2.6"
        return f"{msh}\r{text}\r".encode()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.03)


@contextlib.asynccontextmanager
async def running(outbound: Hl7Outbound) -> AsyncIterator[Hl7Outbound]:
    task = asyncio.create_task(outbound.run())
    try:
        yield outbound
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def new_patient(
    store: RecordStore,
    national_id: str,
    *,
    gp: tuple[str, int] | None = None,
    gp_name: str | None = "Legekontoret",
    care_plan: str = "{}",
    tenant: str = "default",
) -> int:
    async with store.session() as s:
        patient = Patient(
            national_id=national_id,
            family_name="Ødegård",
            given_name="Kari",
            gp_name=gp_name,
            gp_hl7_host=gp[0] if gp else None,
            gp_hl7_port=gp[1] if gp else None,
            tenant_id=tenant,
            care_plan=care_plan,
        )
        s.add(patient)
        await s.flush()
        return patient.id


def plain_message(control_id: str) -> str:
    return (
        "MSH|^~\\&|TRYGGHEIM|T|GP|GP|20250301081500+0100||ORU^R01^ORU_R01|"
        f"{control_id}|P|2.6|||AL|NE\rPID|1||15076500565^^^FNR&2.16.578.1.12.4.1.4.1&ISO^NNNOR\r"
    )


async def queue(store: RecordStore, patient_id: int, *items: tuple[Peer | int, str]) -> None:
    """Queue plain messages in this order: (peer or port, control id)."""
    async with store.session() as s:
        for target, control_id in items:
            port = target.port if isinstance(target, Peer) else target
            s.add(
                Hl7Message(
                    control_id=control_id,
                    kind=Hl7MessageKind.ORU_R01,
                    patient_id=patient_id,
                    host="127.0.0.1",
                    port=port,
                    message=plain_message(control_id),
                    state=Hl7MessageState.PENDING,
                    attempts=0,
                    created_at=datetime.now(UTC),
                )
            )


async def messages(store: RecordStore) -> dict[str, Hl7Message]:
    async with store.session() as s:
        # In id order: PostgreSQL returns updated rows in any order, and tests compare lists.
        rows = await s.scalars(select(Hl7Message).order_by(Hl7Message.id))
        return {m.control_id: m for m in rows}


async def states(store: RecordStore, *control_ids: str) -> list[str]:
    found = await messages(store)
    return [found[c].state for c in control_ids]


async def measure(
    store: RecordStore,
    device_id: str,
    values: Sequence[tuple[str, str, str]],
    at: datetime,
) -> None:
    observations = [
        Observation(GATEWAY, device_id, "ble", code, Decimal(v), unit, at, seq=next(_seqs))
        for code, v, unit in values
    ]
    # Ingested a second ago: settled for the composer.
    await store.commit_batch(GATEWAY, observations, datetime.now(UTC) - timedelta(seconds=1))


# --- the queue ------------------------------------------------------------------------------


async def test_order_retry_with_the_same_control_id_park_and_requeue(store: RecordStore) -> None:
    async with Peer("AR", "AA", "AE", "CA") as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, (gp, "m1"), (gp, "m2"), (gp, "m3"), (gp, "m4"))
        async with running(Hl7Outbound(FAST, store)):
            await until(lambda: _settled(store, "m1", "m2", "m3", "m4"), what="all settled")
        # AR: the same message again (same MSH-10) before anything else; AE: parked, and the
        # next one goes on.
        assert gp.received == ["m1", "m1", "m2", "m3", "m4"]
        found = await messages(store)
        assert [(found[c].state, found[c].ack_code, found[c].attempts) for c in found] == [
            ("acked", "AA", 2),
            ("parked", "AE", 1),
            ("acked", "CA", 1),
            ("acked", "AA", 1),
        ]
        assert found["m1"].next_attempt_at is None and found["m1"].settled_at is not None
        assert found["m2"].last_error == "AE: peer says no"
        (status,) = await destination_statuses(store, "default")
        assert (status.pending, status.parked, status.acked) == (0, 1, 3)
        assert status.last_success_at is not None
        assert status.last_error == "m2: AE: peer says no"
        assert await destination_statuses(store, "other") == []

        # A person requeues the parked message: sent again with its MSH-10.
        with pytest.raises(QueuedMessageNotFound):
            await requeue_parked(store, "other", found["m2"].id, datetime.now(UTC))
        with pytest.raises(QueuedMessageNotParked):
            await requeue_parked(store, "default", found["m1"].id, datetime.now(UTC))
        await requeue_parked(store, "default", found["m2"].id, datetime.now(UTC))
        assert await states(store, "m2") == ["pending"]
        async with running(Hl7Outbound(FAST, store)):
            await until(lambda: _settled(store, "m2"), what="m2 resent")
        assert gp.received[-1] == "m2"
        again = (await messages(store))["m2"]
        assert (again.state, again.attempts, again.ack_code) == ("acked", 2, "AA")


async def _settled(store: RecordStore, *control_ids: str) -> bool:
    return all(state != "pending" for state in await states(store, *control_ids))


async def test_a_blocked_destination_does_not_hold_up_another(store: RecordStore) -> None:
    async with Peer(default="hang") as stuck, Peer() as fine:
        patient = await new_patient(store, "15076500565")
        await queue(
            store, patient, (stuck, "x1"), (fine, "y1"), (stuck, "x2"), (fine, "y2"), (fine, "y3")
        )
        async with running(Hl7Outbound(IMPATIENT, store)):
            await until(lambda: _settled(store, "y1", "y2", "y3"), what="the fine peer served")
            assert _in_order(fine.received) == ["y1", "y2", "y3"]
            # The stuck peer's first message is tried again after each timeout; the second
            # waits behind it.
            await until(lambda: _len_at_least(stuck.received, 2), what="x1 retried")
            assert set(stuck.received) == {"x1"}

            async def recorded_twice() -> bool:
                # An attempt is recorded with its outcome, i.e. after its timeout.
                return (await messages(store))["x1"].attempts >= 2

            await until(recorded_twice, what="both attempts recorded")
            x1 = (await messages(store))["x1"]
            assert x1.state == "pending"
            assert x1.last_error is not None and x1.last_error.startswith("MLLPTimeoutError")
            assert (await messages(store))["x2"].attempts == 0
            stuck.release()
            await until(lambda: _settled(store, "x1", "x2"), what="the stuck peer recovered")
        assert _in_order(stuck.received) == ["x1", "x2"]
        assert "x1" not in stuck.received[stuck.received.index("x2") :]
        assert await states(store, "x1", "x2") == ["acked", "acked"]


def _in_order(received: list[str]) -> list[str]:
    """Control ids in the order first received (a resend repeats one in place)."""
    return list(dict.fromkeys(received))


async def _len_at_least(items: list[str], n: int) -> bool:
    return len(items) >= n


async def test_a_refused_connection_backs_off_until_the_peer_listens(store: RecordStore) -> None:
    port = find_free_port()
    patient = await new_patient(store, "15076500565")
    await queue(store, patient, (port, "r1"), (port, "r2"))
    async with running(Hl7Outbound(FAST, store)):

        async def failed_twice() -> bool:
            return (await messages(store))["r1"].attempts >= 2

        await until(failed_twice, what="two refused attempts")
        r1 = (await messages(store))["r1"]
        assert r1.state == "pending" and r1.last_error is not None
        assert r1.last_error.startswith("ConnectionLost")
        (status,) = await destination_statuses(store, "default")
        assert status.pending == 2 and status.last_success_at is None
        assert status.last_error is not None and status.last_error.startswith("r1: ")
        async with Peer(port=port) as gp:
            await until(lambda: _settled(store, "r1", "r2"), what="delivered once listening")
        assert gp.received == ["r1", "r2"]


async def test_one_process_at_a_time_sends_to_a_destination(store: RecordStore) -> None:
    first, second = Hl7Outbound(FAST, store), Hl7Outbound(FAST, store)
    assert await first._claim("127.0.0.1", 2575)
    assert not await second._claim("127.0.0.1", 2575)
    assert await first._claim("127.0.0.1", 2575)  # renewing its own lease
    await first._release("127.0.0.1", 2575)
    assert await second._claim("127.0.0.1", 2575)


# --- windows: several messages per query and per recording ----------------------------------


async def _settled_at(store: RecordStore, *control_ids: str) -> list[datetime | None]:
    found = await messages(store)
    return [found[c].settled_at for c in control_ids]


async def test_a_window_is_recorded_in_one_transaction_and_an_ae_in_it_parks_only_that_one(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows of 4, each recorded once at its end.
    monkeypatch.setattr(hl7_outbound, "WINDOW", 4)
    monkeypatch.setattr(hl7_outbound, "SETTLE_EVERY_S", 3600)
    ids = [f"w{n}" for n in range(1, 8)]
    async with Peer("AA", "AE", "AA", "CE", "AA") as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, *((gp, c) for c in ids))
        outbound = Hl7Outbound(FAST, store)
        await outbound.send_pending()
    assert gp.received == ids
    found = await messages(store)
    assert [(found[c].state, found[c].ack_code, found[c].attempts) for c in ids] == [
        ("acked", "AA", 1),
        ("parked", "AE", 1),
        ("acked", "AA", 1),
        ("parked", "CE", 1),
        ("acked", "AA", 1),
        ("acked", "AA", 1),
        ("acked", "AA", 1),
    ]
    assert found["w2"].last_error == "AE: peer says no" and found["w1"].last_error is None
    settled = await _settled_at(store, *ids)
    assert len(set(settled[:4])) == 1 and len(set(settled[4:])) == 1 and settled[0] < settled[4]
    assert all(found[c].sent_at is not None for c in ids)
    assert (outbound.stats.sent, outbound.stats.acked, outbound.stats.parked) == (7, 5, 2)
    (status,) = await destination_statuses(store, "default")
    # The window's last failure is the destination's last error.
    assert status.last_error == "w4: CE: peer says no"
    assert (status.pending, status.parked, status.acked) == (0, 2, 5)


@pytest.mark.parametrize("failure", ["AR", "hang"])
async def test_a_failure_in_a_window_stops_it_and_that_message_goes_first_after_the_backoff(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    monkeypatch.setattr(hl7_outbound, "SETTLE_EVERY_S", 3600)
    timeout = 1.0 if failure == "hang" else FAST.ack_timeout_s
    settings = FAST.model_copy(
        update={"retry_after_s": 0.5, "retry_max_s": 0.5, "ack_timeout_s": timeout}
    )
    ids = ["f1", "f2", "f3", "f4", "f5"]
    async with Peer("AA", failure) as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, *((gp, c) for c in ids))
        async with running(Hl7Outbound(settings, store)):

            async def failed_once() -> bool:
                return (await messages(store))["f2"].attempts >= 1

            await until(failed_once, what="the failed attempt recorded")
            # Recorded at once, with the ACK before it; nothing after it was sent.
            found = await messages(store)
            assert gp.received[:2] == ["f1", "f2"]
            if found["f2"].attempts == 1:  # not tried again yet
                assert "f3" not in gp.received
            assert (found["f1"].state, found["f1"].attempts) == ("acked", 1)
            f2 = found["f2"]
            assert f2.state == "pending" and f2.next_attempt_at is not None
            assert f2.last_error is not None
            assert f2.last_error.startswith("AR: " if failure == "AR" else "MLLPTimeoutError")
            gp.release()
            await until(lambda: _settled(store, *ids), what="all delivered")
    assert _in_order(gp.received) == ids
    # The same MSH-10 again, after the backoff, before anything after it.
    second = gp.received.index("f2", 2)
    assert "f3" not in gp.received[:second]
    assert gp.received_at[second] - gp.received_at[1] >= 0.5 - 0.05
    assert gp.messages[second] == gp.messages[1]
    found = await messages(store)
    assert [found[c].state for c in ids] == ["acked"] * 5
    assert found["f2"].attempts >= 2 and found["f2"].next_attempt_at is None


async def test_a_parked_message_requeued_during_a_window_goes_before_the_rest_of_it(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Recorded after every message: each recording looks for a requeued message.
    monkeypatch.setattr(hl7_outbound, "SETTLE_EVERY_S", 0)
    ids = ["q1", "q2", "q3", "q4", "q5"]
    async with Peer("AE", "AA", "hang") as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, *((gp, c) for c in ids))
        async with running(Hl7Outbound(FAST, store)):
            await until(lambda: _len_at_least(gp.received, 3), what="q3 sent")
            assert await states(store, "q1", "q2") == ["parked", "acked"]
            await requeue_parked(
                store, "default", (await messages(store))["q1"].id, datetime.now(UTC)
            )
            gp.release()
            await until(lambda: _settled(store, *ids), what="all delivered")
    assert gp.received == ["q1", "q2", "q3", "q1", "q4", "q5"]
    found = await messages(store)
    assert (found["q1"].state, found["q1"].attempts) == ("acked", 2)


async def test_a_stopping_platform_records_what_was_answered(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hl7_outbound, "SETTLE_EVERY_S", 3600)
    async with Peer("AA", "AA", "hang") as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, (gp, "s1"), (gp, "s2"), (gp, "s3"))
        async with running(Hl7Outbound(FAST, store)):
            await until(lambda: _len_at_least(gp.received, 3), what="s3 sent")
        # Stopped while waiting for s3's ACK: s1 and s2 were recorded on the way out.
        found = await messages(store)
        assert [(found[c].state, found[c].attempts) for c in ("s1", "s2", "s3")] == [
            ("acked", 1),
            ("acked", 1),
            ("pending", 0),
        ]
        gp.release()
        await Hl7Outbound(FAST, store).send_pending()
    assert gp.received == ["s1", "s2", "s3", "s3"]


#: An outbound queue in a process of its own (the test kills it): it records nothing before
#: the end of its window.
_CRASHING_SENDER = """
import asyncio, sys
from gateway.hl7.outbound import service as hl7_outbound
from gateway.settings import Hl7Settings
from gateway.records.store import RecordStore

hl7_outbound.SETTLE_EVERY_S = 3600
settings = Hl7Settings.model_validate_json(sys.argv[2])
asyncio.run(hl7_outbound.Hl7Outbound(settings, RecordStore(sys.argv[1])).send_pending())
"""


async def test_after_a_crash_before_the_recording_the_messages_go_again_with_their_msh10(
    store: RecordStore, database_url: str
) -> None:
    async with Peer("AA", "AA", "hang") as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, (gp, "c1"), (gp, "c2"), (gp, "c3"))
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CRASHING_SENDER,
            database_url,
            FAST.model_dump_json(),
            cwd=REPO,
        )
        try:
            await until(lambda: _len_at_least(gp.received, 3), timeout=30, what="c3 sent")
        finally:
            sender.kill()
            await sender.wait()
        # c1 and c2 were acknowledged by the peer, but the sender died before recording it.
        found = await messages(store)
        assert [(m.state, m.attempts) for m in found.values()] == [("pending", 0)] * 3
        gp.release()
        # The dead process's lease has to expire first: a clock an hour ahead.
        later = Hl7Outbound(FAST, store, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
        await later.send_pending()
    assert gp.received == ["c1", "c2", "c3", "c1", "c2", "c3"]
    assert gp.messages[3:] == gp.messages[:3]  # the very same messages, MSH-10 and all
    assert await states(store, "c1", "c2", "c3") == ["acked"] * 3


async def test_a_lane_that_lost_its_lease_records_what_it_has_and_stops(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hl7_outbound, "WINDOW", 3)
    monkeypatch.setattr(hl7_outbound, "SETTLE_EVERY_S", 3600)
    async with Peer("AA", "hang") as gp:
        patient = await new_patient(store, "15076500565")
        await queue(store, patient, (gp, "l1"), (gp, "l2"), (gp, "l3"), (gp, "l4"))
        outbound = Hl7Outbound(FAST, store)
        lane = asyncio.create_task(outbound.send_pending())
        await until(lambda: _len_at_least(gp.received, 2), what="l2 sent")
        # Meanwhile its lease expired and another process took the destination.
        async with store.session() as s:
            dest = await s.get_one(Hl7Destination, ("127.0.0.1", gp.port))
            dest.lease_owner = "another process"
            dest.lease_until = datetime.now(UTC) + LATER
        gp.release()
        await lane
    assert gp.received == ["l1", "l2", "l3"]  # the window it had; nothing after that
    assert await states(store, "l1", "l2", "l3", "l4") == ["acked"] * 3 + ["pending"]


# --- ORU^R01 --------------------------------------------------------------------------------


async def test_measurements_go_out_with_abnormal_flags_from_the_care_plan(
    store: RecordStore,
) -> None:
    async with Peer() as gp:
        plan = '{"thresholds": {"spo2_low": {"limit": "90"}}}'
        patient = await new_patient(
            store,
            "15076500565",
            gp=("127.0.0.1", gp.port),
            gp_name="Fjellsiden legekontor og legevakt",  # longer than HD-1 allows
            care_plan=plan,
        )
        nobody = await new_patient(store, "12345", gp=("127.0.0.1", gp.port))
        await Registry(store).pair_device(
            DEFAULT_TENANT,
            device_id="C0:10:00:00:00:02",
            patient_id=patient,
            gateway_id=GATEWAY,
            profile=DeviceProfile.PULSE_OXIMETER,
        )
        await Registry(store).pair_device(
            DEFAULT_TENANT,
            device_id="00:1B:DC:0F:AA:01",
            patient_id=patient,
            gateway_id=GATEWAY,
            profile=DeviceProfile.THERMOMETER,
        )
        await Registry(store).pair_device(
            DEFAULT_TENANT,
            device_id="C0:10:00:00:00:09",
            patient_id=nobody,
            gateway_id=GATEWAY,
            profile=DeviceProfile.THERMOMETER,
        )
        at = datetime(2025, 3, 1, 8, 15, tzinfo=UTC)
        await measure(
            store,
            "C0:10:00:00:00:02",
            [("MDC_PULS_OXIM_SAT_O2", "89", "%"), ("MDC_PULS_OXIM_PULS_RATE", "75", "{beat}/min")],
            at,
        )
        await measure(store, "00:1B:DC:0F:AA:01", [("MDC_TEMP_BODY", "102.0", "[degF]")], at)
        await measure(store, "C0:10:00:00:00:09", [("MDC_TEMP_BODY", "36.9", "Cel")], at)

        outbound = Hl7Outbound(FAST, store)
        # The session of the patient whose national id cannot be sent does not block the rest.
        assert await outbound.compose() == 2
        async with store.session() as s:
            by_patient = {
                (row.patient_id, row.hl7_state) for row in await s.scalars(select(ObservationRow))
            }
        assert by_patient == {(patient, Hl7State.QUEUED), (nobody, Hl7State.NOT_APPLICABLE)}
        await outbound.send_pending()
        assert len(gp.messages) == 2
        flags = {}
        for text in gp.messages:
            validate_strictly(text)
            message = parse_message(text)
            assert message.msh.value(6) == "Fjellsiden legekonto"
            for obx in list(message.all("OBX"))[1:]:
                flags[obx.value(3, 2)] = (obx.value(5), obx.value(8))
        assert flags == {
            "MDC_PULS_OXIM_SAT_O2": ("89", "L"),  # below her own limit of 90
            "MDC_PULS_OXIM_PULS_RATE": ("75", ""),
            "MDC_TEMP_BODY": ("102.0", "H"),  # 38.9 °C, above the default 38.5 °C
        }
        assert await states(store, *(await messages(store))) == ["acked", "acked"]


# --- ORU^R40 --------------------------------------------------------------------------------


async def test_composers_take_turns_so_ids_are_committed_in_order(store: RecordStore) -> None:
    """While one transaction adds to the queue (it holds the queue lock), another composer
    waits: a lane, which never goes back in id order, cannot see a higher id commit before a
    lower one (PostgreSQL with two platform processes)."""
    patient = await new_patient(store, "15076500565", gp=("127.0.0.1", 1))
    await Registry(store).pair_device(
        DEFAULT_TENANT,
        device_id="C0:10:00:00:00:02",
        patient_id=patient,
        gateway_id=GATEWAY,
        profile=DeviceProfile.PULSE_OXIMETER,
    )
    at = datetime(2025, 3, 1, 8, 15, tzinfo=UTC)
    await measure(store, "C0:10:00:00:00:02", [("MDC_PULS_OXIM_SAT_O2", "97", "%")], at)
    outbound = Hl7Outbound(FAST, store)
    async with store.session() as s:
        await store.lock_hl7_queue(s)
        composing = asyncio.create_task(outbound.compose())
        done, _ = await asyncio.wait([composing], timeout=1.0)
        assert not done, "a composer went ahead while another transaction held the queue"
    assert await asyncio.wait_for(composing, 10) == 1


def _with_alert_manager(port: int, **changes: float) -> Hl7Settings:
    manager = AlertManagerSettings(host="127.0.0.1", port=port, application="AM", facility="AM")
    return FAST.model_copy(update={"alert_manager": manager, **changes})


async def _spo2_patient(store: RecordStore, device: str = "C0:10:00:00:00:03") -> int:
    patient = await new_patient(store, "15076500565")
    await Registry(store).pair_device(
        DEFAULT_TENANT,
        device_id=device,
        patient_id=patient,
        gateway_id=GATEWAY,
        profile=DeviceProfile.PULSE_OXIMETER,
    )
    return patient


async def _alarm(store: RecordStore) -> AlarmRow:
    async with store.session() as s:
        rows = list(await s.scalars(select(AlarmRow)))
    assert len(rows) == 1
    return rows[0]


def _facets(text: str) -> tuple[str, str, str, str, str]:
    """OBR-3's alert id, then phase, alarm state, inactivation state and priority."""
    message = parse_message(text)
    obr = message.first("OBR")
    assert obr is not None
    values = {obx.value(4): obx.value(5) for obx in message.all("OBX")}
    return (
        obr.value(3, 1),
        values["1.0.0.0.3"],
        values["1.0.0.0.4"],
        values["1.0.0.0.5"],
        values["1.0.0.0.6"],
    )


async def test_an_alarm_is_reported_from_start_to_end(store: RecordStore) -> None:
    async with Peer() as manager:
        outbound = Hl7Outbound(_with_alert_manager(manager.port), store)
        await _spo2_patient(store)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await measure(store, "C0:10:00:00:00:03", [("MDC_PULS_OXIM_SAT_O2", "85", "%")], t0)
        alarm = await _alarm(store)
        assert await outbound.queue_alarm_reports() == 1
        assert await outbound.queue_alarm_reports() == 0  # nothing changed: nothing new

        await AlarmService(store).act(alarm.id, "acknowledge", "user:nurse", datetime.now(UTC))
        assert await outbound.queue_alarm_reports() == 1
        # SpO2 back to normal while the alarm is open: latched.
        await measure(
            store,
            "C0:10:00:00:00:03",
            [("MDC_PULS_OXIM_SAT_O2", "97", "%")],
            t0 + timedelta(1 / 24),
        )
        assert await outbound.queue_alarm_reports() == 1
        for action in ("start", "resolve", "close"):
            await AlarmService(store).act(
                alarm.id, action, "user:nurse", datetime.now(UTC), note="Sensor moved."
            )
        assert await outbound.queue_alarm_reports() == 1
        assert (await _alarm(store)).state == AlarmState.CLOSED

        await outbound.send_pending()
        assert len(manager.messages) == 4
        for text in manager.messages:
            validate_strictly(text)
        alert = str(alarm.id)
        assert [_facets(t) for t in manager.messages] == [
            (alert, "start", "active", "enabled", "PH"),
            (alert, "update", "active", "alert-acknowledged", "PH"),
            (alert, "update", "latched", "alert-acknowledged", "PH"),
            (alert, "end", "inactive", "alert-acknowledged", "PH"),
        ]
        start = parse_message(manager.messages[0])
        obx = list(start.all("OBX"))
        assert (obx[0].value(3, 2), obx[0].value(8), obx[0].value(18, 1)) == (
            "TRY_ALM_SPO2_LOW",
            "L",
            "",
        )
        # The measurement that raised it.
        assert (obx[1].value(3, 2), obx[1].value(5), obx[1].value(14)) == (
            "MDC_PULS_OXIM_SAT_O2",
            "85",
            format_timestamp(t0),
        )
        assert start.msh.field(9) == "ORU^R40^ORU_R40" and start.msh.value(5) == "AM"
        sent = await messages(store)
        assert {(m.kind, m.alarm_id, m.state) for m in sent.values()} == {
            ("ORU^R40", alarm.id, "acked")
        }


async def test_an_alarm_raised_and_cleared_between_rounds_is_reported_twice(
    store: RecordStore,
) -> None:
    async with Peer() as manager:
        await _spo2_patient(store)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await measure(store, "C0:10:00:00:00:03", [("MDC_PULS_OXIM_SAT_O2", "85", "%")], t0)
        await measure(
            store,
            "C0:10:00:00:00:03",
            [("MDC_PULS_OXIM_SAT_O2", "97", "%")],
            t0 + timedelta(1 / 24),
        )
        assert (await _alarm(store)).state == AlarmState.CLOSED  # auto-cleared
        # Closed and older than the look-back: not reported (a new alert manager does not get
        # the history).
        await asyncio.sleep(0.01)
        old = Hl7Outbound(_with_alert_manager(manager.port, alert_lookback_s=0.001), store)
        assert await old.queue_alarm_reports() == 0

        outbound = Hl7Outbound(_with_alert_manager(manager.port), store)
        assert await outbound.queue_alarm_reports() == 2
        assert await outbound.queue_alarm_reports() == 0
        await outbound.send_pending()
        assert [_facets(t)[1:4] for t in manager.messages] == [
            ("start", "active", "enabled"),
            ("end", "inactive", "enabled"),
        ]
        for text in manager.messages:
            validate_strictly(text)


async def test_no_alert_manager_no_alarm_reports(store: RecordStore) -> None:
    await _spo2_patient(store)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    await measure(store, "C0:10:00:00:00:03", [("MDC_PULS_OXIM_SAT_O2", "85", "%")], t0)
    assert await Hl7Outbound(FAST, store).queue_alarm_reports() == 0
    async with store.session() as s:
        assert list(await s.scalars(select(Hl7Message))) == []
        assert await s.get(Tenant, "default") is not None


async def test_commits_while_measurements_settle_cost_one_look(store: RecordStore) -> None:
    """Ingest commits many times a second; measurements are composed only once settled, so
    the commits of a settling period wake the queue once, when the first of them has
    settled — not once each (every look is three transactions)."""
    settings = FAST.model_copy(update={"settle_s": 0.6})
    outbound = Hl7Outbound(settings, store)
    looks: list[float] = []
    compose = outbound.compose

    async def counted() -> int:
        looks.append(asyncio.get_running_loop().time())
        return await compose()

    outbound.compose = counted  # type: ignore[method-assign]
    async with running(outbound):
        await until(lambda: asyncio.sleep(0, bool(looks)), what="the first look")
        first_commit = asyncio.get_running_loop().time()
        for _ in range(10):
            outbound.measurements_stored()
            await asyncio.sleep(0.03)
        assert len(looks) == 1
        await until(lambda: asyncio.sleep(0, len(looks) >= 2), what="the look once settled")
    assert looks[1] - first_commit >= settings.settle_s - 0.05
