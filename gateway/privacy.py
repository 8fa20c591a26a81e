"""GDPR: export of everything the platform holds about one patient, and erasure of it from the
record store and the time-series backend.

Kept after erasure, on purpose: the audit log (who read the patient's data, and the erasure
itself — the health-sector security norm requires it; it holds the internal patient number, not
the person), and dead-lettered MQTT payloads (not attributable to a patient until someone has
investigated them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from sqlalchemy import CursorResult, Delete, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import Device, Hl7Message, ObservationRow, Patient
from gateway.schemas import ObservationOut
from gateway.settings import TimeSeriesFlavour, TimeSeriesSettings
from gateway.store import RecordStore
from gateway.timeseries import MEASUREMENT
from tryggheim.errors import ConnectionLost, TryggheimError

EXPORT_FORMAT = "tryggheim-patient-export/1"


class UnknownPatient(TryggheimError):
    def __init__(self, national_id: str) -> None:
        self.national_id = national_id
        super().__init__(
            "no patient with that national identity number",
            hint="check the number; an erased patient is gone",
        )


async def _patient(store: RecordStore, national_id: str) -> Patient:
    async with store.session() as s:
        patient = await s.scalar(select(Patient).where(Patient.national_id == national_id))
    if patient is None:
        raise UnknownPatient(national_id)
    return patient


async def export_patient(store: RecordStore, national_id: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about the patient, as one JSON-ready object."""
    patient = await _patient(store, national_id)
    async with store.session() as s:
        devices = list(await s.scalars(select(Device).where(Device.patient_id == patient.id)))
        rows = list(
            await s.scalars(
                select(ObservationRow)
                .where(ObservationRow.patient_id == patient.id)
                .order_by(ObservationRow.time, ObservationRow.pk)
            )
        )
        messages = list(
            await s.scalars(
                select(Hl7Message)
                .where(Hl7Message.patient_id == patient.id)
                .order_by(Hl7Message.id)
            )
        )
    return {
        "format": EXPORT_FORMAT,
        "exported_at": now.isoformat(),
        "patient": {
            "national_id": patient.national_id,
            "family_name": patient.family_name,
            "given_name": patient.given_name,
            "gp_name": patient.gp_name,
            "gp_hl7_endpoint": (
                f"{patient.gp_hl7_host}:{patient.gp_hl7_port}" if patient.gp_hl7_host else None
            ),
        },
        "devices": [
            {"device_id": d.device_id, "gateway_id": d.gateway_id, "profile": d.profile}
            for d in devices
        ],
        "observations": [ObservationOut.of(row).model_dump(mode="json") for row in rows],
        "hl7_messages": [
            {
                "control_id": m.control_id,
                "state": m.state,
                "created_at": m.created_at.isoformat(),
                "ack_code": m.ack_code,
                "message": m.message,
            }
            for m in messages
        ],
    }


async def erase_patient(
    store: RecordStore, timeseries: TimeSeriesSettings | None, national_id: str
) -> dict[str, int]:
    """Delete the patient's data: the time series first (if that fails, the record store still
    holds the patient and the erasure can simply be run again), then the record store in one
    transaction. Returns what was removed."""
    patient = await _patient(store, national_id)
    if timeseries is not None:
        await _erase_series(timeseries, patient.id)
    async with store.session() as s:
        # Unlink before deleting: observations point at their HL7 message.
        await s.execute(
            update(ObservationRow)
            .where(ObservationRow.patient_id == patient.id)
            .values(hl7_message_id=None)
        )
        removed = {
            "observations": await _delete(
                s, delete(ObservationRow).where(ObservationRow.patient_id == patient.id)
            ),
            "hl7_messages": await _delete(
                s, delete(Hl7Message).where(Hl7Message.patient_id == patient.id)
            ),
            "devices": await _delete(s, delete(Device).where(Device.patient_id == patient.id)),
        }
        await s.execute(delete(Patient).where(Patient.id == patient.id))
    return removed


async def _delete(s: AsyncSession, statement: Delete) -> int:
    result = cast(CursorResult[Any], await s.execute(statement))
    return result.rowcount


async def _erase_series(settings: TimeSeriesSettings, patient_id: int) -> None:
    try:
        if settings.flavour is TimeSeriesFlavour.VICTORIAMETRICS:
            selector = f'{{__name__=~"{MEASUREMENT}_.*",patient="{patient_id}"}}'
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{settings.url}/api/v1/admin/tsdb/delete_series",
                    params={"match[]": selector},
                ) as response,
            ):
                if response.status >= 300:
                    raise ConnectionLost(settings.url, f"delete_series: HTTP {response.status}")
        else:
            async with InfluxDBClientAsync(
                url=settings.url, token=settings.token.get_secret_value(), org=settings.org
            ) as client:
                await client.delete_api().delete(
                    start=datetime(1970, 1, 1, tzinfo=UTC),
                    stop=datetime.now(UTC),
                    predicate=f'_measurement="{MEASUREMENT}" AND patient="{patient_id}"',
                    bucket=settings.bucket,
                    org=settings.org,
                )
    except (aiohttp.ClientError, OSError) as exc:
        raise ConnectionLost(settings.url, f"cannot erase time series: {exc}") from exc
