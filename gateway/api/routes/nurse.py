"""Read routes the nurse app needs beyond the care API: the thresholds in effect for a patient
(the defaults of docs/alarms.md with her care plan's changes), and the devices of her home with
battery level and when each was last heard from.

Authorisation as everywhere (gateway/api/deps.py): a route names its action, and ``patient_for``
answers 404 for a patient outside the caller's scope. Every read is audited."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from zoneinfo import ZoneInfo

from fastapi import APIRouter

from gateway.alarms import ThresholdRule, default_rules
from gateway.alarms.careplan import CarePlan
from gateway.api.deps import (
    Audit,
    ListsPatients,
    PathId,
    ReadsPatient,
    Registered,
    patient_for,
)
from gateway.api.schemas import (
    DeviceCheckOut,
    PatientDeviceOut,
    PatientThresholdsOut,
    ThresholdOut,
)
from gateway.auth import Action, policy
from gateway.records.models import ObservationRow, Patient, restore_offset
from gateway.registry.service import Registry
from tryggheim import codes

_DEFAULTS = {r.rule_id: r for r in default_rules() if isinstance(r, ThresholdRule)}


def thresholds_of(patient: Patient, tz: ZoneInfo) -> list[ThresholdOut]:
    """The patient's threshold rules in effect: defaults, her limits, none she switched off."""
    rules = CarePlan.model_validate_json(patient.care_plan).rules(tz).rules
    return [
        ThresholdOut(
            rule_id=rule.rule_id,
            codes=list(rule.codes),
            comparison=rule.comparison,
            limit=str(rule.limit),
            unit=rule.unit,
            margin=str(rule.margin),
            severity=rule.severity,
            personal=rule != _DEFAULTS.get(rule.rule_id),
        )
        for rule in rules
        if isinstance(rule, ThresholdRule)
    ]


async def _timezone(registry: Registry, tenant_id: str) -> ZoneInfo:
    return ZoneInfo((await registry.tenant(tenant_id)).timezone)


async def devices_of(registry: Registry, patient_id: int) -> list[PatientDeviceOut]:
    """Paired devices and every device seen in the patient's data, with the newest observation
    of each code per device."""
    home = await registry.patient_devices(patient_id)
    rows, paired, gateways = home.newest, home.paired, home.gateways
    places, names = home.sensors, home.names
    by_device: dict[str, list[ObservationRow]] = {}
    for row in rows:
        by_device.setdefault(row.device_id, []).append(row)
    kinds = {d.device_id: codes.DeviceKind.of_profile(d.profile) for d in paired}
    paired_gateway = {d.device_id: d.gateway_id for d in paired}

    out = []
    for device_id in sorted(by_device.keys() | kinds.keys()):
        seen = by_device.get(device_id, [])
        last = max(seen, key=lambda r: r.time, default=None)
        battery = _newest(r for r in seen if r.code == codes.EVENT_BATTERY.ref)
        battery_low = _newest(r for r in seen if r.code == codes.EVENT_BATTERY_LOW.ref)
        check = _newest(r for r in seen if r.code in _DEVICE_CHECKS)
        gateway_id = last.gateway_id if last is not None else paired_gateway[device_id]
        gateway = gateways.get(gateway_id)
        place = places.get((gateway_id, device_id))
        out.append(
            PatientDeviceOut(
                device_id=device_id,
                gateway_id=gateway_id,
                kind=kinds.get(device_id),
                sensor_kind=place.kind if place else None,
                room=place.room if place else None,
                name=names.get((gateway_id, device_id)),
                codes=sorted({r.code for r in seen}),
                last_seen=restore_offset(last.time, last.utc_offset_min) if last else None,
                battery_percent=battery.value if battery else None,
                battery_at=(
                    restore_offset(battery.time, battery.utc_offset_min) if battery else None
                ),
                gateway_online=gateway.online if gateway else None,
                gateway_status_at=gateway.status_at if gateway else None,
                battery_low=Decimal(battery_low.value) != 0 if battery_low else None,
                last_check=(
                    DeviceCheckOut(
                        code=check.code,
                        value=check.value,
                        unit=check.unit,
                        time=restore_offset(check.time, check.utc_offset_min),
                    )
                    if check
                    else None
                ),
            )
        )
    return out


#: Observations in which a device checks itself (shown on the device, never as a vital).
_DEVICE_CHECKS = frozenset({codes.GLUCOSE_CONTROL_CHECK.ref, codes.EVENT_SMOKE_TEST.ref})


def _newest(rows: Iterable[ObservationRow]) -> ObservationRow | None:
    return max(rows, key=lambda r: (r.time, r.seq), default=None)


def nurse_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["care"])

    @router.get("/thresholds", response_model=list[PatientThresholdsOut])
    async def list_thresholds(
        principal: ListsPatients, registry: Registered, audit: Audit
    ) -> list[PatientThresholdsOut]:
        """The thresholds in effect for each of the caller's patients (as ``GET
        /api/v1/patients`` lists them): the nurse app colours latest values against them."""
        patients = await registry.visible_patients(
            policy.visible_team_ids(principal, Action.LIST_PATIENTS)
        )
        await audit.viewed("list_thresholds", (p.id for p in patients))
        tz = await _timezone(registry, principal.tenant_id)
        return [
            PatientThresholdsOut(patient_id=p.id, thresholds=thresholds_of(p, tz)) for p in patients
        ]

    @router.get("/patients/{patient_id}/thresholds", response_model=list[ThresholdOut])
    async def patient_thresholds(
        patient_id: PathId, principal: ReadsPatient, registry: Registered, audit: Audit
    ) -> list[ThresholdOut]:
        """The patient's thresholds in effect: the defaults (docs/alarms.md) with her care
        plan's limits; a threshold she has switched off is not listed."""
        patient = await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
        await audit.viewed("read_thresholds", [patient_id])
        return thresholds_of(patient, await _timezone(registry, patient.tenant_id))

    @router.get("/patients/{patient_id}/devices", response_model=list[PatientDeviceOut])
    async def patient_devices(
        patient_id: PathId,
        principal: ReadsPatient,
        registry: Registered,
        audit: Audit,
    ) -> list[PatientDeviceOut]:
        """The devices of the patient's home: her paired medical devices and the home sensors
        seen in her data, each with its newest battery level, when it was last heard from and
        whether its home gateway is online."""
        await patient_for(registry, principal, Action.READ_PATIENT, patient_id)
        await audit.viewed("read_devices", [patient_id])
        return await devices_of(registry, patient_id)

    return router
