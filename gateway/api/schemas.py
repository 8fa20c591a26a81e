"""API schemas (pydantic), separate from the storage models in gateway/records/models.py."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.alarms import AlarmState, Comparison, Severity, alarm_code, policy_for, taken_by
from gateway.alarms.book import history_of
from gateway.auth import Role
from gateway.observability import PlatformProblem
from gateway.records.models import AlarmRow, ObservationRow, Patient, User
from gateway.registry.kinds import PairableKind
from tryggheim import codes
from tryggheim.domain import Observation
from tryggheim.wire import GATEWAY_ID_PATTERN

if TYPE_CHECKING:
    from gateway.registry.service import DevicePlace


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
        return cls.of_observation(row.observation(), row.seq, row.value)

    @classmethod
    def of_observation(cls, obs: Observation, seq: int, value: str) -> ObservationOut:
        """``value``: the decimal text as stored."""
        return cls.model_validate(shown_observation(obs, seq, value))


_JSON_TIME = TypeAdapter(datetime)


def shown_observation(obs: Observation, seq: int, value: str) -> dict[str, Any]:
    """An observation as :class:`ObservationOut` shows it in JSON, built without the model:
    the live stream carries every new value, and validating then dumping a model per value
    was about 3.5 µs of the ingest path's CPU per observation (issue 18). ``value``: the
    decimal text as stored."""
    return {
        "id": obs.id,
        "gateway_id": obs.gateway_id,
        "seq": seq,
        "device_id": obs.device_id,
        "source": obs.source,
        "code": obs.code,
        "mdc": obs.mdc,
        "display": codes.metric(obs.code).display,
        "value": value,
        "unit": obs.unit,
        "time": _JSON_TIME.dump_python(obs.time, mode="json"),
        "time_source": obs.time_source.value,
        "flags": list(obs.flags),
    }


class PatientOut(BaseModel):
    """A patient as the nurse's list shows her: latest values and open alarms."""

    id: int
    family_name: str
    given_name: str
    gp_name: str | None
    care_team_id: int | None
    latest: list[ObservationOut]
    open_alarms: list[AlarmOut]

    @classmethod
    def of(
        cls, patient: Patient, latest: list[ObservationRow], alarms: list[AlarmRow]
    ) -> PatientOut:
        return cls(
            id=patient.id,
            family_name=patient.family_name,
            given_name=patient.given_name,
            gp_name=patient.gp_name,
            care_team_id=patient.care_team_id,
            latest=[ObservationOut.of(row) for row in latest],
            open_alarms=[AlarmOut.of(row) for row in alarms],
        )


class Problem(BaseModel):
    """An error answer (RFC 9457 problem details, ``application/problem+json``): the same shape
    for every 4xx and 5xx of the API (gateway/api/errors.py)."""

    type: str = "about:blank"
    title: str
    """The HTTP status phrase."""
    status: int
    detail: str
    """What was wrong, for a person."""
    hint: str | None = None
    """What to do about it."""
    error: str | None = None
    """401/403: the RFC 6750 error code (``invalid_token``, ``insufficient_scope``)."""
    errors: list[dict[str, Any]] | None = None
    """422: each invalid input, as ``{"type", "loc", "msg", ...}``."""


# --- registry ---------------------------------------------------------------------------------

_GATEWAY_ID = GATEWAY_ID_PATTERN
_NAME = Field(min_length=1, max_length=200)


#: Ids are 32-bit in the record store (PostgreSQL ``integer``): a larger one is a 422, never a
#: database error.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    timezone: str
    retention_observations_days: int
    retention_alarms_days: int
    retention_audit_days: int


class RetentionIn(_In):
    observations_days: int = Field(ge=1, le=36500)
    alarms_days: int = Field(ge=1, le=36500)
    audit_days: int = Field(ge=1, le=36500)


class CareTeamIn(_In):
    name: str = _NAME


class CareTeamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str


class UserIn(_In):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")
    display_name: str = _NAME
    roles: list[Role] = Field(min_length=1)
    care_team_ids: list[RowId] = []
    password: SecretStr = Field(min_length=12, max_length=200)


class UserPatch(_In):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    roles: list[Role] | None = Field(default=None, min_length=1)
    care_team_ids: list[RowId] | None = None
    disabled: bool | None = None
    password: SecretStr | None = Field(default=None, min_length=12, max_length=200)


class PasswordReset(BaseModel):
    password: str
    """A temporary password, shown this once: give it to her; she signs in with it (her
    sessions and tokens ended when it was set)."""


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    roles: list[Role]
    care_team_ids: list[int]
    disabled: bool

    @classmethod
    def of(cls, user: User, team_ids: tuple[int, ...]) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            roles=[Role(r) for r in user.roles.split(",") if r],
            care_team_ids=list(team_ids),
            disabled=user.disabled,
        )


_GP_PORT: Any = Field(default=None, ge=1, le=65535, validate_default=True)


def _host_with_port(port: int | None, info: ValidationInfo) -> int | None:
    """The GP's HL7 endpoint is a host and a port, or neither (outbound HL7 needs both). The
    port follows the host, so the host is known here (absent from ``info.data`` when the host
    itself was refused: then that is the error to show)."""
    if "gp_hl7_host" not in info.data:
        return port
    host = info.data["gp_hl7_host"]
    if port is not None and host is None:
        raise PydanticCustomError("gp_host_missing", "a host is needed with the port")
    if port is None and host is not None:
        raise PydanticCustomError("gp_port_missing", "a port is needed with the host")
    return port


class PatientRegistrationIn(_In):
    national_id: str = Field(
        pattern=r"^\d{11}$",
        description="fødselsnummer, D-nummer or FH-nummer (felles hjelpenummer)",
    )
    family_name: str = _NAME
    given_name: str = _NAME
    gp_name: str | None = Field(default=None, max_length=200)
    gp_hl7_host: str | None = Field(default=None, min_length=1, max_length=255)
    gp_hl7_port: int | None = _GP_PORT
    care_team_id: RowId | None = None

    _gp_endpoint = field_validator("gp_hl7_port")(_host_with_port)


class PatientRegistrationPatch(_In):
    family_name: str | None = Field(default=None, min_length=1, max_length=200)
    given_name: str | None = Field(default=None, min_length=1, max_length=200)
    gp_name: str | None = Field(default=None, max_length=200)
    gp_hl7_host: str | None = Field(default=None, min_length=1, max_length=255)
    gp_hl7_port: int | None = _GP_PORT
    """Sent together with ``gp_hl7_host`` (both, or both null): HL7 goes to host and port."""
    care_team_id: RowId | None = None
    """The team that cares for the patient (null: none); only the fields sent are changed."""

    _gp_endpoint = field_validator("gp_hl7_port")(_host_with_port)


class PatientRegistrationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    national_id: str
    family_name: str
    given_name: str
    gp_name: str | None
    gp_hl7_host: str | None
    gp_hl7_port: int | None
    care_team_id: int | None
    birth_date: date | None
    sex: str | None
    discharged_at: datetime | None
    """Home care ended (ADT^A03)."""
    merged_into_id: int | None
    """This record was merged into that patient (ADT^A40)."""


class CareTeamAssignment(_In):
    care_team_id: RowId | None


class GatewayIn(_In):
    id: str = Field(
        pattern=_GATEWAY_ID,
        description="also the gateway's broker user name: lower-case letters, digits and hyphens,"
        " 2 to 63 characters; not a static broker user such as `platform`",
    )
    patient_id: RowId | None = None


class GatewayOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    patient_id: int | None
    created_at: datetime
    online: bool | None
    status_at: datetime | None
    outbox_depth: int | None = None
    """Observations waiting in its outbox, as its last status said."""


class GatewayOutboxOut(BaseModel):
    """One edge outbox of a home gateway (an epoch: a new outbox, e.g. after an SD card was
    replaced, starts a new one): how far the platform has committed its seqs."""

    model_config = ConfigDict(from_attributes=True)

    epoch: str
    """"" for an edge that sends no epoch (older than epochs)."""
    committed_seq: int
    """Every seq up to it is stored or dead-lettered (what the edge was acknowledged)."""
    highest_seq: int
    """The highest seq received; above ``committed_seq`` while seqs are missing (a gap)."""
    seq_jumps: int
    """Times a seq arrived far beyond everything this outbox sent before."""
    rejected: int
    """Observations dead-lettered (the edge was told, and keeps them aside)."""
    last_seen: datetime | None


class GatewayProvisioned(GatewayOut):
    broker_username: str
    broker_password: str
    """Shown once: put it in the home gateway's edge.toml; the platform keeps only a hash."""


class DeviceIn(_In):
    device_id: str = Field(min_length=1, max_length=64)
    patient_id: RowId
    gateway_id: str = Field(pattern=_GATEWAY_ID)
    kind: PairableKind


class DeviceOut(BaseModel):
    device_id: str
    patient_id: int
    gateway_id: str
    profile: int


#: What a device's name may hold: letters, digits, spaces and common punctuation (no control
#: characters, no markup).
DEVICE_NAME_PATTERN = r"^[\w .,:;'()/&+–-]*$"


class DeviceNameIn(_In):
    name: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=64, pattern=DEVICE_NAME_PATTERN),
        ]
        | None
    )
    """The name the nurse sees ("Ytterdør"); null or empty: none (room and kind)."""


class HomeDeviceOut(BaseModel):
    """A device of a home, as the admin names it: a paired device (``profile``) or a home
    sensor of its gateway's sensor map (``sensor_kind``, ``room``)."""

    model_config = ConfigDict(from_attributes=True)

    gateway_id: str
    device_id: str
    patient_id: int | None
    sensor_kind: str | None
    room: str | None
    profile: str | None
    name: str | None


# --- alarms -----------------------------------------------------------------------------------


class TransitionOut(BaseModel):
    from_state: str | None
    to_state: str
    at: datetime
    by: str | None
    note: str | None


class AlarmOut(BaseModel):
    id: int
    patient_id: int
    rule_id: str
    code: str
    display: str
    severity: Severity
    state: AlarmState
    raised_at: datetime
    device_id: str | None
    """The device (or home gateway) the alarm is about; None for the patient as a whole."""
    device_kind: str | None = None
    """What that device is: a paired medical device's kind (``blood_pressure``) or a home
    sensor's (``motion``); None when the platform does not know it."""
    device_room: str | None = None
    """Where a home sensor is (its gateway's sensor map)."""
    device_name: str | None = None
    """The name an admin gave the device ("Ytterdør")."""
    trigger_value: str | None
    """The value that raised it, as measured, in ``trigger_unit`` (UCUM)."""
    trigger_unit: str | None
    acknowledged_by: str | None
    acknowledged_by_name: str | None
    """The display name of whoever acknowledged it (a user's name, not ``user:2``)."""
    acknowledged_at: datetime | None
    taken_by: str | None
    """Who has the alarm now (took it, or took it over); None until someone has."""
    taken_by_name: str | None
    condition_cleared_at: datetime | None
    auto_cleared: bool
    resolution_note: str | None
    escalation_level: int | None
    escalated_to: str | None
    """Who the last escalation notified (the level's name in the alarm's escalation policy:
    ``care_team``, ``coordinator``, ``on_call``); None before the first."""
    history: list[TransitionOut]

    @classmethod
    def of(
        cls, row: AlarmRow, names: Mapping[str, str] | None = None, place: DevicePlace | None = None
    ) -> AlarmOut:
        """``names``: subject → display name of the people in its history; ``place``: what and
        where its device is."""
        names = names or {}
        kind = None
        if place is not None:
            kind = place.sensor_kind or codes.DeviceKind.of_profile(place.profile or "")
        history = history_of(row)
        taker = taken_by(history)
        return cls(
            id=row.id,
            patient_id=row.patient_id,
            rule_id=row.rule_id,
            code=row.code,
            display=alarm_code(row.code).display,
            severity=Severity(row.severity),
            state=AlarmState(row.state),
            raised_at=row.raised_at,
            device_id=row.device_id,
            device_kind=kind,
            device_room=place.room if place else None,
            device_name=place.name if place else None,
            trigger_value=row.trigger_value,
            trigger_unit=row.trigger_unit,
            acknowledged_by=row.acknowledged_by,
            acknowledged_by_name=names.get(row.acknowledged_by or ""),
            acknowledged_at=row.acknowledged_at,
            taken_by=taker,
            taken_by_name=names.get(taker or ""),
            condition_cleared_at=row.condition_cleared_at,
            auto_cleared=row.auto_cleared,
            resolution_note=row.resolution_note,
            escalation_level=row.escalation_level,
            escalated_to=escalated_to(row),
            history=[
                TransitionOut(
                    from_state=t.from_state.value if t.from_state else None,
                    to_state=t.to_state.value,
                    at=t.at,
                    by=t.by,
                    note=t.note,
                )
                for t in history
            ],
        )


class ResolveIn(_In):
    note: str = Field(min_length=1, max_length=4000)


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    patient_id: int | None
    purpose: str
    client: str | None
    outcome: Literal["allowed", "denied"]
    """``denied``: a read of this patient's data that was refused (403 or 404)."""


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, bool]


class PlatformStatusOut(BaseModel):
    """Whether the platform itself is degraded, for the coordinators' banner (no patient data)."""

    degraded: bool
    problems: list[PlatformProblem]
    """What is wrong, most serious first (docs/runbook.md has what IT does about each)."""


# --- the nurse app (gateway/api/routes/nurse.py)
# -----------------------------------------------------


class ThresholdOut(BaseModel):
    """One threshold in effect for a patient: the default, or her care plan's limit."""

    rule_id: str
    codes: list[str]
    comparison: Comparison
    """Raised when the value is below (``<``) or above (``>``) the limit."""
    limit: str
    """Decimal text, in ``unit``."""
    unit: str
    margin: str
    """How far back past the limit a value must come to clear the alarm."""
    severity: Severity
    personal: bool
    """The patient's care plan changed the default limit (docs/alarms.md)."""


class PatientThresholdsOut(BaseModel):
    patient_id: int
    thresholds: list[ThresholdOut]


class DeviceCheckOut(BaseModel):
    """A device checking itself: never a value of the patient's."""

    code: str
    value: str
    unit: str
    time: datetime


class PatientDeviceOut(BaseModel):
    """A device of the patient's home: paired (a BLE medical device) or seen in her data (a
    home sensor), with what the platform last heard from it."""

    device_id: str
    gateway_id: str
    kind: codes.DeviceKind | None
    """Of a paired medical device; a home sensor has none (see ``codes``)."""
    sensor_kind: str | None = None
    """Of a home sensor, from its gateway's sensor map (``motion``, ``door``, ``fall`` …)."""
    room: str | None = None
    """Where it is, from the sensor map (``Bad``); None when the map does not say."""
    name: str | None = None
    """The name an admin gave it ("Ytterdør"); shown before its room and kind."""
    codes: list[str]
    """What it has reported, e.g. ``TRY_EVT_DOOR_CONTACT``."""
    last_seen: datetime | None
    """Time of its newest observation (device clock, in its own UTC offset)."""
    battery_percent: str | None
    """Its newest ``TRY_EVT_DEVICE_BATTERY`` value."""
    battery_at: datetime | None
    battery_low: bool | None = None
    """Its newest own "battery low" flag (``TRY_EVT_DEVICE_BATTERY_LOW``; None: never said),
    for sensors that report no percentage."""
    last_check: DeviceCheckOut | None = None
    """Its newest self-check: a glucose meter's control-solution reading
    (``TRY_DEV_GLUCOSE_CONTROL_CHECK``) or a smoke alarm's test (``TRY_EVT_SMOKE_ALARM_TEST``)."""
    gateway_online: bool | None
    """The home gateway's last status (None: never reported)."""
    gateway_status_at: datetime | None


def escalated_to(row: AlarmRow) -> str | None:
    """The name of the escalation level an alarm last reached, from its severity's policy."""
    if row.escalation_level is None:
        return None
    levels = policy_for(Severity(row.severity)).levels
    return levels[min(row.escalation_level, len(levels) - 1)].name
