"""The authorisation rules, role × action, against a table written out here independently of
gateway/auth/policy.py, and against the table in docs/auth.md."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from gateway.auth import Action, PermissionDenied, Principal, Role, Scope, policy

DOCS = Path(__file__).resolve().parents[3] / "docs" / "auth.md"

N, C, AD, I = Role.NURSE, Role.COORDINATOR, Role.ADMIN, Role.INTEGRATION  # noqa: E741
T, W = Scope.TEAM, Scope.TENANT
#: action: (nurse, coordinator, admin, integration); None = denied
EXPECTED: dict[Action, tuple[Scope | None, Scope | None, Scope | None, Scope | None]] = {
    Action.LIST_PATIENTS: (T, W, None, None),
    Action.READ_PATIENT: (T, W, None, None),
    Action.HANDLE_ALARM: (T, W, None, None),
    Action.EXPORT_MEASUREMENTS: (T, W, None, None),
    Action.EDIT_CARE_PLAN: (None, W, None, None),
    Action.MANAGE_REGISTRY: (None, None, W, None),
    Action.MANAGE_USERS: (None, None, W, None),
    Action.READ_AUDIT_LOG: (None, None, W, None),
    Action.MANAGE_RETENTION: (None, None, W, None),
    Action.EXPORT_PATIENT_DATA: (None, None, W, None),
    Action.ERASE_PATIENT_DATA: (None, None, W, None),
    Action.INGEST: (None, None, None, W),
    Action.READ_PLATFORM_STATUS: (None, W, W, None),
}
ROLES = (N, C, AD, I)


def person(*roles: Role, teams: tuple[str, ...] = ("a",), tenant: str = "oslo") -> Principal:
    return Principal(
        subject="user:1",
        display_name="Test",
        tenant_id=tenant,
        care_team_ids=frozenset(teams),
        roles=frozenset(roles),
    )


def test_every_action_is_in_the_expected_table() -> None:
    assert set(EXPECTED) == set(Action)


@pytest.mark.parametrize(
    ("role", "action"), list(itertools.product(ROLES, Action)), ids=lambda v: str(v)
)
def test_role_action(role: Role, action: Action) -> None:
    expected = EXPECTED[action][ROLES.index(role)]
    who = person(role)
    assert policy.scope_of(who, action) == expected
    assert policy.allowed(who, action) is (expected is not None)
    if expected is None:
        with pytest.raises(PermissionDenied) as raised:
            policy.require(who, action)
        assert raised.value.status_code == 403 and raised.value.hint
    else:
        policy.require(who, action)
    # the patient-level rule: own team, other team, no team, other tenant
    assert policy.can_act_on_patient(who, action, "oslo", "a") is (expected is not None)
    assert policy.can_act_on_patient(who, action, "oslo", "b") is (expected is Scope.TENANT)
    assert policy.can_act_on_patient(who, action, "oslo", None) is (expected is Scope.TENANT)
    assert not policy.can_act_on_patient(who, action, "bergen", "a")


def test_nurse_sees_only_her_teams() -> None:
    kari = person(N, teams=("a", "c"))
    scope = policy.visible_team_ids(kari)
    assert scope.tenant_id == "oslo" and not scope.all_teams and scope.team_ids == {"a", "c"}
    assert policy.can_read_patient(kari, "oslo", "a")
    assert policy.can_read_patient(kari, "oslo", "c")
    assert not policy.can_read_patient(kari, "oslo", "b")
    assert not policy.can_read_patient(kari, "oslo", None)
    assert not policy.can_read_patient(kari, "bergen", "a")  # same team id, other municipality
    policy.require_patient(kari, Action.READ_PATIENT, "oslo", "a")
    with pytest.raises(PermissionDenied, match="care teams"):
        policy.require_patient(kari, Action.READ_PATIENT, "oslo", "b")
    with pytest.raises(PermissionDenied, match="not allowed"):
        policy.require_patient(kari, Action.ERASE_PATIENT_DATA, "oslo", "a")


def test_nurse_without_team_sees_nobody() -> None:
    scope = policy.visible_team_ids(person(N, teams=()))
    assert scope.empty and not scope.allows("oslo", "a")


def test_coordinator_is_tenant_wide_but_not_beyond() -> None:
    scope = policy.visible_team_ids(person(C, teams=()))
    assert scope.all_teams and scope.allows("oslo", "any") and not scope.allows("bergen", "any")


def test_admin_and_integration_see_no_patient_list() -> None:
    for role in (AD, I):
        scope = policy.visible_team_ids(person(role, teams=("a",)), Action.LIST_PATIENTS)
        assert scope.empty and not scope.allows("oslo", "a")


def test_roles_combine_to_the_widest_scope() -> None:
    both = person(N, C, teams=("a",))
    assert policy.scope_of(both, Action.READ_PATIENT) is Scope.TENANT
    assert policy.allowed(both, Action.EDIT_CARE_PLAN)
    nurse_admin = person(N, AD, teams=("a",))
    assert policy.allowed(nurse_admin, Action.READ_AUDIT_LOG)
    assert not policy.can_read_patient(nurse_admin, "oslo", "b")
    nobody = person(teams=("a",))
    assert not any(policy.allowed(nobody, a) for a in Action)


def test_require_roles() -> None:
    policy.require_roles(person(AD), AD, C)
    with pytest.raises(PermissionDenied, match="admin"):
        policy.require_roles(person(N), AD)


def test_docs_table_matches_the_policy() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("<!-- policy-table -->")[1].split("<!-- /policy-table -->")[0]
    rows = [line for line in table.strip().splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[1:] == [r.value for r in ROLES]
    documented: dict[str, list[str]] = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        action = re.sub(r"[`*]", "", cells[0]).split()[0]
        documented[action] = cells[1:]
    assert set(documented) == {a.value for a in Action}
    for action, cells in documented.items():
        want = [s.value if s else "—" for s in EXPECTED[Action(action)]]
        assert cells == want, action
