"""Home gateway statuses (heartbeats) as the record store keeps them: the gateway's last state,
outbox depth and sensor map, written for a round of statuses in a few statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from homes import register_homes, statements
from sqlalchemy import select

from gateway.records.home_gateways import HomeGatewayRepository, StatusHeard
from gateway.records.models import HomeGateway, HomeSensor
from gateway.records.store import RecordStore
from tryggheim.wire import GatewayStatusReport, SensorPlacement

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
HALL = SensorPlacement("0x00124b0000000003", "door", "gang")
LIVING_ROOM = SensorPlacement("0x00124b0000000001", "motion", "stue")
BATHROOM = SensorPlacement("0x00124b0000000009", "motion", "bad")


async def _state(store: RecordStore, gateway_id: str) -> tuple[object, ...]:
    async with store.session() as s:
        gateway = await s.get_one(HomeGateway, gateway_id)
        sensors = await s.scalars(
            select(HomeSensor).where(HomeSensor.gateway_id == gateway_id).order_by(HomeSensor.room)
        )
        placed = [SensorPlacement(p.device_id, p.kind, p.room) for p in sensors]
        return gateway.online, gateway.status_at, gateway.outbox_depth, placed


async def test_a_status_keeps_what_it_leaves_out_and_replaces_a_changed_sensor_map(
    store: RecordStore,
) -> None:
    (gateway,) = await register_homes(store, 1, T0)

    async def heard(report: GatewayStatusReport, at: datetime) -> tuple[object, ...]:
        await store.commit_batches([], at, statuses=[report], from_edges=True)
        return await _state(store, gateway)

    mapped = GatewayStatusReport(gateway, True, 12, sensors=(LIVING_ROOM, HALL))
    assert await heard(mapped, T0) == (True, T0, 12, [HALL, LIVING_ROOM])
    # The will's offline has no depth and no map: both stay as the last status said.
    will = GatewayStatusReport(gateway, False, None)
    assert await heard(will, T0 + timedelta(seconds=5)) == (
        False,
        T0 + timedelta(seconds=5),
        12,
        [HALL, LIVING_ROOM],
    )
    moved = GatewayStatusReport(gateway, True, 0, sensors=(BATHROOM, HALL))
    assert await heard(moved, T0 + timedelta(seconds=35)) == (
        True,
        T0 + timedelta(seconds=35),
        0,
        [BATHROOM, HALL],
    )
    emptied = GatewayStatusReport(gateway, True, 0, sensors=())
    assert await heard(emptied, T0 + timedelta(seconds=65)) == (
        True,
        T0 + timedelta(seconds=65),
        0,
        [],
    )


async def test_statuses_of_one_round_are_recorded_in_order(store: RecordStore) -> None:
    """The will's offline and the next online in one round: the engine hears both, each as
    news, and the gateway ends online with the last depth sent and the last map."""
    first, second = await register_homes(store, 2, T0)
    reports = [
        GatewayStatusReport(first, True, 3, sensors=(HALL,)),
        GatewayStatusReport("gw-not-registered", True, 1),
        GatewayStatusReport(first, False, None),
        GatewayStatusReport(second, True, None),
        GatewayStatusReport(first, True, None, sensors=(LIVING_ROOM,)),
    ]
    async with store.session() as s:
        recorded = await HomeGatewayRepository(s).record_statuses(reports, T0)
        patients = [await HomeGatewayRepository(s).patient_of(g) for g in (first, second)]
    assert recorded == [
        StatusHeard(first, patients[0], True, True),
        StatusHeard(first, patients[0], False, True),
        StatusHeard(second, patients[1], True, True),
        StatusHeard(first, patients[0], True, True),
    ]
    assert await _state(store, first) == (True, T0, 3, [LIVING_ROOM])
    assert await _state(store, second) == (True, T0, None, [])


async def test_a_round_of_heartbeats_writes_as_much_for_twenty_homes_as_for_one(
    store: RecordStore,
) -> None:
    """The edge sends its sensor map in every status. A round of heartbeats that repeat what
    their gateways said wrote the map again (a delete and an insert per sensor) and updated
    each gateway on its own: the writes must not grow with the round's heartbeats."""
    gateways = await register_homes(store, 21, T0)
    sensors = (LIVING_ROOM, HALL)

    async def heartbeats(homes: list[str], at: datetime) -> list[str]:
        statuses = [
            GatewayStatusReport(g, True, 0, committed_seq=0, sensors=sensors) for g in homes
        ]
        with statements(store, "INSERT", "UPDATE", "DELETE") as writes:
            await store.commit_batches([], at, statuses=statuses, from_edges=True)
        return writes

    await heartbeats(gateways, T0)  # the first: each map is new, each home's engine hears it
    twenty = await heartbeats(gateways[1:], T0 + timedelta(seconds=30))
    one = await heartbeats(gateways[:1], T0 + timedelta(seconds=31))
    assert len(twenty) == len(one)
    writes = twenty + one
    assert not [w for w in writes if "home_sensors" in w]
    assert await _state(store, gateways[20]) == (
        True,
        T0 + timedelta(seconds=30),
        0,
        [HALL, LIVING_ROOM],
    )
