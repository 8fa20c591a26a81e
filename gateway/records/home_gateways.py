"""The home gateways: the box in each patient's home, its broker account, its last status, the
home sensors its status names with their rooms, and the edge outboxes it has sent from."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import DeviceName, GatewayProgress, HomeGateway, HomeSensor
from tryggheim.wire import GatewayStatusReport, SensorPlacement

_GATEWAYS = cast(Table, HomeGateway.__table__)
_SENSORS = cast(Table, HomeSensor.__table__)
#: A round's statuses as one statement over their gateways, not an ORM object each: an outbox
#: depth a status leaves out keeps the one before. The statements of a round of statuses are
#: built once: a round comes every second.
_RECORD_STATUS = (
    update(_GATEWAYS)
    .where(_GATEWAYS.c.id == bindparam("gateway"))
    .values(
        online=bindparam("is_online"),
        status_at=bindparam("heard_at"),
        outbox_depth=func.coalesce(bindparam("depth"), _GATEWAYS.c.outbox_depth),
    )
)


_STATES = select(_GATEWAYS.c.id, _GATEWAYS.c.online, _GATEWAYS.c.patient_id).where(
    _GATEWAYS.c.id.in_(bindparam("gateways", expanding=True))
)
_NAMES = cast(Table, DeviceName.__table__)
#: What an alarm is shown with (its device's room and name), read each time a person acts on
#: one: built once, and only the wanted devices' rows.
_PLACED_SENSORS = (
    select(_GATEWAYS.c.patient_id, _SENSORS.c.device_id, _SENSORS.c.kind, _SENSORS.c.room)
    .join(_SENSORS, _SENSORS.c.gateway_id == _GATEWAYS.c.id)
    .where(
        _GATEWAYS.c.patient_id.in_(bindparam("patients", expanding=True)),
        _SENSORS.c.device_id.in_(bindparam("devices", expanding=True)),
    )
)
_NAMED_DEVICES = (
    select(_GATEWAYS.c.patient_id, _NAMES.c.device_id, _NAMES.c.name)
    .join(_NAMES, _NAMES.c.gateway_id == _GATEWAYS.c.id)
    .where(
        _GATEWAYS.c.patient_id.in_(bindparam("patients", expanding=True)),
        _NAMES.c.device_id.in_(bindparam("devices", expanding=True)),
    )
)
_SENSORS_OF = select(
    _SENSORS.c.gateway_id, _SENSORS.c.device_id, _SENSORS.c.kind, _SENSORS.c.room
).where(_SENSORS.c.gateway_id.in_(bindparam("gateways", expanding=True)))


class StatusHeard(NamedTuple):
    """A status recorded on its home gateway."""

    gateway_id: str
    patient_id: int | None
    online: bool
    news: bool
    """The gateway was not known to be in this state (its status before said otherwise, or it
    had none)."""


class HomeGatewayRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def add(
        self,
        gateway_id: str,
        *,
        tenant_id: str,
        patient_id: int | None,
        password_hash: str,
        now: datetime,
    ) -> HomeGateway:
        """``password_hash`` empty: the broker account is managed elsewhere."""
        gateway = HomeGateway(
            id=gateway_id,
            tenant_id=tenant_id,
            patient_id=patient_id,
            broker_password_hash=password_hash,
            created_at=now,
        )
        self._s.add(gateway)
        return gateway

    async def get(self, gateway_id: str) -> HomeGateway | None:
        return await self._s.get(HomeGateway, gateway_id)

    async def in_tenant(self, tenant_id: str, gateway_id: str) -> HomeGateway | None:
        gateway = await self._s.get(HomeGateway, gateway_id)
        return gateway if gateway is not None and gateway.tenant_id == tenant_id else None

    async def remove(self, gateway: HomeGateway) -> None:
        """The gateway and the names given to the devices of its home."""
        await self._s.execute(delete(DeviceName).where(DeviceName.gateway_id == gateway.id))
        await self._s.delete(gateway)

    async def of_tenant(self, tenant_id: str) -> list[HomeGateway]:
        return list(
            await self._s.scalars(
                select(HomeGateway)
                .where(HomeGateway.tenant_id == tenant_id)
                .order_by(HomeGateway.id)
            )
        )

    async def of_patient(self, patient_id: int, also: Collection[str] = ()) -> list[HomeGateway]:
        """The gateways in the patient's home, and those named in ``also`` (ones her data came
        through)."""
        return list(
            await self._s.scalars(
                select(HomeGateway).where(
                    HomeGateway.id.in_(also) | (HomeGateway.patient_id == patient_id)
                )
            )
        )

    async def patient_of(self, gateway_id: str) -> int | None:
        patient_id: int | None = await self._s.scalar(
            select(HomeGateway.patient_id).where(HomeGateway.id == gateway_id)
        )
        return patient_id

    async def broker_accounts(self) -> list[tuple[str, str]]:
        """(gateway id, password hash) of every gateway whose broker account is ours."""
        rows = await self._s.execute(
            select(HomeGateway.id, HomeGateway.broker_password_hash)
            .where(HomeGateway.broker_password_hash != "")
            .order_by(HomeGateway.id)
        )
        return [(gateway_id, hash_) for gateway_id, hash_ in rows]

    async def outboxes(self, gateway_id: str) -> list[GatewayProgress]:
        """The edge outboxes (epochs) the gateway has sent from, newest first."""
        return list(
            await self._s.scalars(
                select(GatewayProgress)
                .where(GatewayProgress.gateway_id == gateway_id)
                .order_by(GatewayProgress.last_seen.desc(), GatewayProgress.epoch)
            )
        )

    async def record_statuses(
        self, reports: Sequence[GatewayStatusReport], now: datetime
    ) -> list[StatusHeard]:
        """Record statuses (heartbeats) on their gateways, in order, in a few statements for
        the lot: a thousand homes' heartbeats are a round's work, not a thousand ORM updates. A
        status of a gateway not registered is left out. A sensor map replaces the gateway's
        only where it differs: the edge sends its map in every status, and it seldom changes."""
        wanted = sorted({report.gateway_id for report in reports})
        if not wanted:
            return []
        states = await self._s.execute(_STATES, {"gateways": wanted})
        known = {gateway_id: (online, patient_id) for gateway_id, online, patient_id in states}
        heard: list[StatusHeard] = []
        latest: dict[str, dict[str, object]] = {}
        maps: dict[str, dict[str, SensorPlacement]] = {}
        for report in reports:
            if (state := known.get(report.gateway_id)) is None:
                continue
            was_online, patient_id = state
            known[report.gateway_id] = (report.online, patient_id)
            news = was_online != report.online
            heard.append(StatusHeard(report.gateway_id, patient_id, report.online, news))
            depth = latest.get(report.gateway_id, {}).get("depth")
            latest[report.gateway_id] = {
                "gateway": report.gateway_id,
                "is_online": report.online,
                "heard_at": now,
                "depth": depth if report.outbox_depth is None else report.outbox_depth,
            }
            if report.sensors is not None:
                maps[report.gateway_id] = {p.device_id: p for p in report.sensors}
        if latest:
            # In the gateways' order in every transaction: two workers wait, not deadlock.
            connection = await self._s.connection()
            await connection.execute(_RECORD_STATUS, [latest[g] for g in sorted(latest)])
        if maps:
            await self._replace_changed_maps(maps)
        return heard

    async def _replace_changed_maps(self, maps: dict[str, dict[str, SensorPlacement]]) -> None:
        stored: dict[str, dict[str, SensorPlacement]] = {}
        rows = await self._s.execute(_SENSORS_OF, {"gateways": sorted(maps)})
        for gateway_id, device_id, kind, room in rows:
            stored.setdefault(gateway_id, {})[device_id] = SensorPlacement(device_id, kind, room)
        changed = sorted(g for g, placements in maps.items() if placements != stored.get(g, {}))
        if not changed:
            return
        await self._s.execute(delete(HomeSensor).where(HomeSensor.gateway_id.in_(changed)))
        placed = [
            {"gateway_id": g, "device_id": p.device_id, "kind": p.kind, "room": p.room}
            for g in changed
            for p in maps[g].values()
        ]
        if placed:
            connection = await self._s.connection()
            await connection.execute(insert(_SENSORS), placed)

    async def sensors(self, gateway_ids: Collection[str]) -> list[HomeSensor]:
        return list(
            await self._s.scalars(select(HomeSensor).where(HomeSensor.gateway_id.in_(gateway_ids)))
        )

    async def placed_sensors(
        self, patient_ids: Collection[int], device_ids: Collection[str]
    ) -> dict[tuple[int, str], tuple[str, str]]:
        """(patient, device) → the kind and room of those of these devices that are home
        sensors of these patients' gateways."""
        params = {"patients": list(patient_ids), "devices": list(device_ids)}
        rows = await self._s.execute(_PLACED_SENSORS, params)
        return {(p, d): (kind, room) for p, d, kind, room in rows}

    async def device_names(self, gateway_ids: Collection[str]) -> dict[tuple[str, str], str]:
        """The names an admin gave devices of these homes, by (gateway, device)."""
        return {
            (n.gateway_id, n.device_id): n.name
            for n in await self._s.scalars(
                select(DeviceName).where(DeviceName.gateway_id.in_(gateway_ids))
            )
        }

    async def device_names_of_patients(
        self, patient_ids: Collection[int], device_ids: Collection[str]
    ) -> dict[tuple[int, str], str]:
        """The names an admin gave these devices of these patients' homes, by (patient,
        device)."""
        params = {"patients": list(patient_ids), "devices": list(device_ids)}
        rows = await self._s.execute(_NAMED_DEVICES, params)
        return {(p, d): name for p, d, name in rows}

    async def sensors_of_tenant(self, tenant_id: str) -> list[tuple[HomeSensor, int | None]]:
        """Each home sensor of the tenant's gateways, with the gateway's patient."""
        rows = await self._s.execute(
            select(HomeSensor, HomeGateway.patient_id)
            .join(HomeGateway, HomeSensor.gateway_id == HomeGateway.id)
            .where(HomeGateway.tenant_id == tenant_id)
        )
        return [(sensor, patient_id) for sensor, patient_id in rows]

    async def device_names_of_tenant(self, tenant_id: str) -> dict[tuple[str, str], str]:
        """The names an admin gave devices of the tenant's homes, by (gateway, device)."""
        gateways = select(HomeGateway.id).where(HomeGateway.tenant_id == tenant_id)
        return {
            (n.gateway_id, n.device_id): n.name
            for n in await self._s.scalars(
                select(DeviceName).where(DeviceName.gateway_id.in_(gateways))
            )
        }

    async def name_device(self, gateway_id: str, device_id: str, name: str | None) -> None:
        """Give a device of the gateway's home a name (None: take it away)."""
        if name is None:
            await self._s.execute(
                delete(DeviceName).where(
                    DeviceName.gateway_id == gateway_id, DeviceName.device_id == device_id
                )
            )
        else:
            await self._s.merge(DeviceName(gateway_id=gateway_id, device_id=device_id, name=name))
