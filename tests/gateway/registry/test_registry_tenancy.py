"""Patients and devices are registered per tenant by one implementation (the registry), whoever
asks — the registry API, provisioning from a file, the tests. Provisioning into the default
tenant finds a national identity number or a device that is another municipality's: it refuses
(a Conflict), and the other municipality's patient and pairing stay as they were."""

from __future__ import annotations

import pytest

from gateway.records.models import DEFAULT_TENANT
from gateway.records.store import RecordStore
from gateway.registry.provision import DeviceEntry, PatientEntry, provision
from gateway.registry.provision import Registry as RegistryFile
from gateway.registry.service import Conflict, Registry
from tryggheim.codes import DeviceProfile

BERGEN = "bergen"
NATIONAL_ID = "01014090011"
DEVICE = "C0:10:00:00:00:01"


@pytest.fixture
async def bergen_patient(store: RecordStore) -> int:
    registry = Registry(store)
    await registry.ensure_tenant(BERGEN, "Bergen kommune", "Europe/Oslo")
    patient = await registry.create_patient(
        BERGEN, national_id=NATIONAL_ID, family_name="Ødegård", given_name="Kari"
    )
    await registry.pair_device(
        BERGEN,
        device_id=DEVICE,
        patient_id=patient.id,
        gateway_id="gw-bergen",
        profile=DeviceProfile.BLOOD_PRESSURE,
    )
    return patient.id


def _entry(national_id: str, *devices: str) -> PatientEntry:
    return PatientEntry(
        national_id=national_id,
        family_name="Hansen",
        given_name="Ola",
        devices=[
            DeviceEntry(device_id=d, gateway_id="gw-oslo", kind="blood_pressure") for d in devices
        ],
    )


async def test_provisioning_does_not_take_another_tenants_patient(
    store: RecordStore, bergen_patient: int
) -> None:
    with pytest.raises(Conflict):
        await provision(store, RegistryFile(patients=[_entry(NATIONAL_ID)]))
    kept = await Registry(store).patient(BERGEN, bergen_patient)
    assert (kept.family_name, kept.given_name) == ("Ødegård", "Kari")


async def test_provisioning_does_not_take_another_tenants_device(
    store: RecordStore, bergen_patient: int
) -> None:
    with pytest.raises(Conflict):
        await provision(store, RegistryFile(patients=[_entry("02020290022", DEVICE)]))
    (device,) = await Registry(store).devices(BERGEN)
    assert (device.patient_id, device.gateway_id) == (bergen_patient, "gw-bergen")


async def test_provisioning_again_updates_the_same_patient(store: RecordStore) -> None:
    await provision(store, RegistryFile(patients=[_entry("02020290022", DEVICE)]))
    renamed = _entry("02020290022", DEVICE).model_copy(update={"family_name": "Berg"})
    await provision(store, RegistryFile(patients=[renamed]))
    (patient,) = await Registry(store).patients(DEFAULT_TENANT)
    assert patient.family_name == "Berg"
    (device,) = await Registry(store).devices(DEFAULT_TENANT)
    assert device.patient_id == patient.id
