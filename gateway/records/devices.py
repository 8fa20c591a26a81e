"""The paired medical devices: which patient a BLE device measures, through which home gateway,
and what it is (its IEEE 11073 profile). Tenant scope is the caller's: a device belongs to the
tenant of its patient."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.records.models import Device, Patient
from tryggheim.codes import DeviceProfile

_DEVICES = cast(Table, Device.__table__)
#: A paired device's profile, read each time a person acts on an alarm about it: built once.
_PROFILES = select(_DEVICES.c.patient_id, _DEVICES.c.device_id, _DEVICES.c.profile).where(
    _DEVICES.c.patient_id.in_(bindparam("patients", expanding=True)),
    _DEVICES.c.device_id.in_(bindparam("devices", expanding=True)),
)


class DeviceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, device_id: str) -> Device | None:
        return await self._s.get(Device, device_id)

    async def pair(
        self, device_id: str, *, patient_id: int, gateway_id: str, profile: DeviceProfile
    ) -> Device:
        """Pair the device to the patient, or move it to her (a device is paired once)."""
        device = await self._s.merge(
            Device(
                device_id=device_id,
                patient_id=patient_id,
                gateway_id=gateway_id,
                profile=profile.value,
            )
        )
        await self._s.flush()
        return device

    async def unpair(self, device: Device) -> None:
        await self._s.delete(device)

    async def of_tenant(self, tenant_id: str) -> list[Device]:
        return list(
            await self._s.scalars(
                select(Device)
                .join(Patient, Device.patient_id == Patient.id)
                .where(Patient.tenant_id == tenant_id)
                .order_by(Device.device_id)
            )
        )

    async def profiles(
        self, patient_ids: Collection[int], device_ids: Collection[str]
    ) -> dict[tuple[int, str], str]:
        """(patient, device) → the profile of those of these devices paired with these
        patients."""
        params = {"patients": list(patient_ids), "devices": list(device_ids)}
        rows = await self._s.execute(_PROFILES, params)
        return {(p, d): profile for p, d, profile in rows}

    async def of_patients(self, patient_ids: Collection[int]) -> list[Device]:
        return list(
            await self._s.scalars(
                select(Device).where(Device.patient_id.in_(patient_ids)).order_by(Device.device_id)
            )
        )
