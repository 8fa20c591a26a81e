"""Registry provisioning from a TOML file: patients, their GP endpoint and their devices.

Until the registry API (issue 5) exists this is how municipality IT loads patients; it is
idempotent, keyed on national identity number and device id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import RecordStore
from gateway.registry import service as registered
from gateway.registry.kinds import PairableKind, profile_of
from tryggheim.config import load_settings


class DeviceEntry(BaseModel):
    device_id: str = Field(min_length=1, max_length=64)
    gateway_id: str = Field(min_length=1, max_length=64)
    kind: PairableKind


class PatientEntry(BaseModel):
    national_id: str = Field(pattern=r"^\d{11}$")
    family_name: str = Field(min_length=1)
    given_name: str = Field(min_length=1)
    gp_name: str | None = None
    gp_hl7_host: str | None = None
    gp_hl7_port: int | None = Field(default=None, ge=1, le=65535)
    devices: list[DeviceEntry] = []
    care_team: str | None = Field(default=None, min_length=1, max_length=200)
    """Name of the patient's care team (created when missing)."""
    home_gateway: str | None = Field(default=None, min_length=1, max_length=64)
    """The home gateway in her home: home sensors on it are hers."""


class Registry(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid")

    patients: list[PatientEntry] = []


async def provision(store: RecordStore, registry: Registry) -> int:
    """Idempotent: keyed on national identity number and device id. Patients go to the
    default tenant; a patient or device of another tenant is a
    :class:`~gateway.registry.service.Conflict`, left as it is."""
    records = registered.Registry(store)
    for entry in registry.patients:
        patient = await records.upsert_patient(
            DEFAULT_TENANT,
            national_id=entry.national_id,
            family_name=entry.family_name,
            given_name=entry.given_name,
            gp_name=entry.gp_name,
            gp_hl7_host=entry.gp_hl7_host,
            gp_hl7_port=entry.gp_hl7_port,
        )
        patient_id = patient.id
        for device in entry.devices:
            await records.pair_device(
                DEFAULT_TENANT,
                device_id=device.device_id.upper(),
                patient_id=patient_id,
                gateway_id=device.gateway_id,
                profile=profile_of(device.kind),
            )
        if entry.care_team is not None:
            team_id = await records.team_named(DEFAULT_TENANT, entry.care_team)
            await records.update_patient(DEFAULT_TENANT, patient_id, care_team_id=team_id)
        if entry.home_gateway is not None:
            await records.register_gateway(
                DEFAULT_TENANT, entry.home_gateway, patient_id, datetime.now(UTC)
            )
    return len(registry.patients)


def load_registry(path: Path) -> Registry:
    return load_settings(Registry, path)
