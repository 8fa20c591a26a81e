"""Authorisation in one place: which role may do what, and over which patients.

Every route asks here; nothing else in the platform compares roles or care teams. The table
``POLICY`` is the whole rule set (docs/auth.md shows it, and a test keeps the two equal):

- ``Scope.TEAM``: only patients of the principal's own care teams (in her tenant);
- ``Scope.TENANT``: everything in the principal's tenant (municipality);
- absent: not allowed.

A principal with several roles gets the union, with the widest scope any of them gives.
No role ever reaches across tenants."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.auth.errors import PermissionDenied
from gateway.auth.principal import Principal, Role


class Action(StrEnum):
    LIST_PATIENTS = "list_patients"
    """Patient list with latest values (the nurse's screen)."""
    READ_PATIENT = "read_patient"
    """One patient's observations, history, live stream, alarms."""
    HANDLE_ALARM = "handle_alarm"
    """Acknowledge, start, resolve and close alarms."""
    EXPORT_MEASUREMENTS = "export_measurements"
    """CSV export of one patient's measurements (for care)."""
    EDIT_CARE_PLAN = "edit_care_plan"
    """Personal thresholds, measurement schedule, team assignment of a patient."""
    MANAGE_REGISTRY = "manage_registry"
    """Patients' registration data, care teams, home gateways, devices, provisioning."""
    MANAGE_USERS = "manage_users"
    READ_AUDIT_LOG = "read_audit_log"
    MANAGE_RETENTION = "manage_retention"
    EXPORT_PATIENT_DATA = "export_patient_data"
    """GDPR: all data of one patient as JSON."""
    ERASE_PATIENT_DATA = "erase_patient_data"
    """GDPR: erasure of one patient's data in every store."""
    INGEST = "ingest"
    """Machine input: observation ingest, HL7 (ADT in / ACKs) endpoints."""
    READ_PLATFORM_STATUS = "read_platform_status"
    """Whether the platform itself is degraded (no patient data): the coordinators' banner."""


class Scope(StrEnum):
    TEAM = "team"
    TENANT = "tenant"


A = Action
POLICY: dict[Role, dict[Action, Scope]] = {
    Role.NURSE: {
        A.LIST_PATIENTS: Scope.TEAM,
        A.READ_PATIENT: Scope.TEAM,
        A.HANDLE_ALARM: Scope.TEAM,
        A.EXPORT_MEASUREMENTS: Scope.TEAM,
    },
    Role.COORDINATOR: {
        A.LIST_PATIENTS: Scope.TENANT,
        A.READ_PATIENT: Scope.TENANT,
        A.HANDLE_ALARM: Scope.TENANT,
        A.EXPORT_MEASUREMENTS: Scope.TENANT,
        A.EDIT_CARE_PLAN: Scope.TENANT,
        A.READ_PLATFORM_STATUS: Scope.TENANT,
    },
    Role.ADMIN: {
        A.MANAGE_REGISTRY: Scope.TENANT,
        A.MANAGE_USERS: Scope.TENANT,
        A.READ_AUDIT_LOG: Scope.TENANT,
        A.MANAGE_RETENTION: Scope.TENANT,
        A.EXPORT_PATIENT_DATA: Scope.TENANT,
        A.ERASE_PATIENT_DATA: Scope.TENANT,
        A.READ_PLATFORM_STATUS: Scope.TENANT,
    },
    Role.INTEGRATION: {
        A.INGEST: Scope.TENANT,
    },
}
del A


@dataclass(frozen=True, slots=True)
class TeamScope:
    """Which care teams of ``tenant_id`` a principal reaches for one action. A store query
    filters on the tenant always, and on ``team_ids`` unless ``all_teams``."""

    tenant_id: str
    all_teams: bool
    team_ids: frozenset[str]

    def allows(self, tenant_id: str, team_id: str | None) -> bool:
        if tenant_id != self.tenant_id:
            return False
        if self.all_teams:
            return True
        return team_id is not None and team_id in self.team_ids

    @property
    def empty(self) -> bool:
        return not self.all_teams and not self.team_ids


def scope_of(principal: Principal, action: Action) -> Scope | None:
    """The widest scope any of the principal's roles gives for ``action`` (None: not allowed)."""
    scopes = {POLICY[role][action] for role in principal.roles if action in POLICY[role]}
    if Scope.TENANT in scopes:
        return Scope.TENANT
    return Scope.TEAM if scopes else None


def allowed(principal: Principal, action: Action) -> bool:
    """May the principal perform ``action`` at all (on something in her scope)?"""
    return scope_of(principal, action) is not None


def require(principal: Principal, action: Action) -> None:
    if not allowed(principal, action):
        roles = ", ".join(sorted(principal.roles)) or "no role"
        raise PermissionDenied(principal.subject, action.value, f"not allowed for {roles}")


def require_roles(principal: Principal, *roles: Role) -> None:
    """At least one of ``roles``. Prefer ``require(principal, action)``: actions keep the rule
    set in ``POLICY``; this is for the rare check that really is about a role."""
    if not principal.has_role(*roles):
        wanted = " or ".join(roles)
        raise PermissionDenied(principal.subject, f"act as {wanted}", "role missing")


def visible_team_ids(principal: Principal, action: Action = Action.READ_PATIENT) -> TeamScope:
    """The care teams whose patients ``principal`` reaches for ``action``: a nurse her own
    teams, a coordinator all teams of her tenant, anyone without the action none."""
    scope = scope_of(principal, action)
    return TeamScope(
        tenant_id=principal.tenant_id,
        all_teams=scope is Scope.TENANT,
        team_ids=principal.care_team_ids if scope is not None else frozenset(),
    )


def can_act_on_patient(
    principal: Principal, action: Action, patient_tenant_id: str, patient_team_id: str | None
) -> bool:
    """May ``principal`` perform ``action`` on a patient of this tenant and care team? A patient
    in no team is reached only with tenant scope."""
    return visible_team_ids(principal, action).allows(patient_tenant_id, patient_team_id)


def can_read_patient(
    principal: Principal, patient_tenant_id: str, patient_team_id: str | None
) -> bool:
    return can_act_on_patient(principal, Action.READ_PATIENT, patient_tenant_id, patient_team_id)


def require_patient(
    principal: Principal, action: Action, patient_tenant_id: str, patient_team_id: str | None
) -> None:
    """Raise PermissionDenied unless ``can_act_on_patient``. Routes should answer 404 rather
    than 403 for a patient outside the caller's scope, so that existence does not leak."""
    require(principal, action)
    if not can_act_on_patient(principal, action, patient_tenant_id, patient_team_id):
        raise PermissionDenied(
            principal.subject, action.value, "the patient is not in the caller's care teams"
        )
