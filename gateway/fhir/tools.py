"""The work behind ``tryggheim fhir observations`` and ``tryggheim fhir validate`` (argument
parsing stays in :mod:`tryggheim.apps.cli`).

``fhir observations`` reads the JSON that ``tryggheim ble decode ... --observations`` prints (as
``tryggheim hl7 oru`` does) and builds a ``collection`` Bundle of the FHIR Observations and the
Device; ``--device-eui64`` names the device when the observations' ``device_id`` is no EUI-64 or
MAC address. ``fhir validate`` reads one resource or Bundle and lists its problems.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from gateway.fhir.resources import (
    DeviceRef,
    FhirMappingError,
    ObservationContext,
    PatientRef,
    Resource,
    collection_bundle,
    map_observations,
)
from gateway.fhir.settings import FhirProfiles, Organisation
from gateway.fhir.validation import Problem, validate
from gateway.hl7.outbound.compose import device_profile_for, read_observations
from tryggheim.domain import Observation
from tryggheim.errors import TryggheimError


@dataclass(frozen=True, slots=True)
class ObservationsBundle:
    bundle: Resource
    skipped: tuple[Observation, ...]


def observations_bundle(
    path: Path,
    *,
    national_id: str,
    device_eui64: str | None,
    performer: Organisation | None,
    profiles: FhirProfiles,
    now: datetime,
) -> ObservationsBundle:
    observations: Sequence[Observation] = read_observations(path)
    if device_eui64 is not None:
        if DeviceRef(device_eui64).eui64 is None:
            raise FhirMappingError("--device-eui64", f"{device_eui64!r} is no EUI-64 or MAC")
        observations = [replace(obs, device_id=device_eui64) for obs in observations]
    devices = []
    for device_id in dict.fromkeys(obs.device_id for obs in observations):
        mine = [obs for obs in observations if obs.device_id == device_id]
        try:
            devices.append(DeviceRef(device_id, device_profile_for(mine)))
        except TryggheimError:  # events, or several kinds: a device without a profile
            devices.append(DeviceRef(device_id))
    mapped = map_observations(
        observations,
        ObservationContext(PatientRef(national_id), profiles, performer, devices=tuple(devices)),
    )
    if not mapped.observations:
        raise FhirMappingError(str(path), "holds no measurement FHIR has an Observation for")
    bundle = collection_bundle([*mapped.observations, *mapped.devices], now=now)
    return ObservationsBundle(bundle, mapped.skipped)


def validate_file(path: Path) -> list[Problem]:
    """The problems of the resource in ``path`` (unreadable JSON is one problem)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FhirMappingError(str(path), f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        return [Problem(str(path), "json", "not UTF-8 text")]
    try:
        resource = json.loads(text)
    except ValueError as exc:
        return [Problem(str(path), "json", f"not JSON: {exc}")]
    return validate(resource)
