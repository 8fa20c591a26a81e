"""API schemas (pydantic), separate from the storage models in gateway/models.py."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from gateway.models import ObservationRow, Patient
from tryggheim import codes


class ObservationOut(BaseModel):
    id: str
    gateway_id: str
    seq: int
    device_id: str
    source: str
    code: str
    mdc: int
    display: str
    value: str
    """Decimal text exactly as the device reported it."""
    unit: str
    time: datetime
    time_source: str
    flags: list[str]

    @classmethod
    def of(cls, row: ObservationRow) -> ObservationOut:
        obs = row.observation()
        return cls(
            id=obs.id,
            gateway_id=obs.gateway_id,
            seq=row.seq,
            device_id=obs.device_id,
            source=obs.source,
            code=obs.code,
            mdc=obs.mdc,
            display=codes.metric(obs.code).display,
            value=row.value,
            unit=obs.unit,
            time=obs.time,
            time_source=obs.time_source.value,
            flags=list(obs.flags),
        )


class PatientOut(BaseModel):
    id: int
    family_name: str
    given_name: str
    gp_name: str | None
    latest: list[ObservationOut]

    @classmethod
    def of(cls, patient: Patient, latest: list[ObservationRow]) -> PatientOut:
        return cls(
            id=patient.id,
            family_name=patient.family_name,
            given_name=patient.given_name,
            gp_name=patient.gp_name,
            latest=[ObservationOut.of(row) for row in latest],
        )


class Problem(BaseModel):
    detail: str
