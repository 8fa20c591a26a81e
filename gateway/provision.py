"""Registry provisioning from a TOML file: patients, their GP endpoint and their devices.

Until the registry API (issue 5) exists this is how municipality IT loads patients; it is
idempotent, keyed on national identity number and device id.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.store import RecordStore
from tryggheim.codes import DeviceProfile
from tryggheim.config import load_settings

_PROFILES = {
    "blood_pressure": DeviceProfile.BLOOD_PRESSURE,
    "pulse_oximeter": DeviceProfile.PULSE_OXIMETER,
    "thermometer": DeviceProfile.THERMOMETER,
    "scale": DeviceProfile.SCALE,
    "glucose_meter": DeviceProfile.GLUCOSE_METER,
}


class DeviceEntry(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    gateway_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(pattern="^(" + "|".join(_PROFILES) + ")$")


class PatientEntry(BaseModel):
    national_id: str = Field(pattern=r"^\d{11}$")
    family_name: str = Field(min_length=1)
    given_name: str = Field(min_length=1)
    gp_name: str | None = None
    gp_hl7_host: str | None = None
    gp_hl7_port: int | None = Field(default=None, ge=1, le=65535)
    devices: list[DeviceEntry] = []


class Registry(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid")

    patients: list[PatientEntry] = []


async def provision(store: RecordStore, registry: Registry) -> int:
    for entry in registry.patients:
        patient_id = await store.upsert_patient(
            national_id=entry.national_id,
            family_name=entry.family_name,
            given_name=entry.given_name,
            gp_name=entry.gp_name,
            gp_hl7_host=entry.gp_hl7_host,
            gp_hl7_port=entry.gp_hl7_port,
        )
        for device in entry.devices:
            await store.pair_device(
                device_id=device.device_id.upper(),
                patient_id=patient_id,
                gateway_id=device.gateway_id,
                profile=_PROFILES[device.kind],
            )
    return len(registry.patients)


def load_registry(path: Path) -> Registry:
    return load_settings(Registry, path)
