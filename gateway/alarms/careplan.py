"""A patient's care plan: personal thresholds, measurement schedule and combined rules.

Stored as JSON on the patient row and edited through the API; :meth:`CarePlan.rules` turns it
into the alarm engine's :class:`~gateway.alarms.PatientRules`. Everything is validated here, so
a plan that is stored always builds (a bad one is a 422 at the API, never an ingest failure).
"""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.alarms import (
    Comparison,
    Composite,
    InactivityRule,
    Op,
    PatientRules,
    Rule,
    RuleError,
    ScheduleRule,
    Severity,
    ThresholdRule,
    default_rules,
)
from gateway.alarms.codes import COMBINED
from tryggheim import codes
from tryggheim.errors import UnknownCodeError

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,60}$")]

_DEFAULT_THRESHOLDS = {r.rule_id: r for r in default_rules() if isinstance(r, ThresholdRule)}


def _known_code(code: str) -> str:
    try:
        codes.metric(code)
    except UnknownCodeError as exc:
        raise ValueError(str(exc)) from None
    return code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThresholdOverride(_Strict):
    """Replace a default threshold's limit (and margin), or switch it off."""

    enabled: bool = True
    limit: Decimal | None = Field(default=None, allow_inf_nan=False)
    margin: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)


class ScheduledMeasurement(_Strict):
    """A measurement owed every listed weekday between ``window_start`` and ``deadline``
    (local time); missing it raises ``TRY_ALM_MEASUREMENT_MISSED``."""

    rule_id: RuleId
    codes: list[str] = Field(min_length=1)
    window_start: time
    deadline: time
    weekdays: list[int] = Field(default=[0, 1, 2, 3, 4, 5, 6], min_length=1)
    """0 = Monday."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        for code in self.codes:
            _known_code(code)
        if any(not 0 <= day <= 6 for day in self.weekdays):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return self


class Condition(_Strict):
    """One threshold condition inside a combined rule."""

    code: str
    comparison: Comparison
    limit: Decimal = Field(allow_inf_nan=False)
    unit: str
    margin: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _known_code(self.code)
        return self


class CombinedRule(_Strict):
    """Conditions combined with AND/OR into one alarm (e.g. SpO2 < 90 AND pulse > 110)."""

    rule_id: RuleId
    op: Op
    conditions: list[Condition] = Field(min_length=2, max_length=10)
    severity: Severity = Severity.HIGH


class CarePlan(_Strict):
    thresholds: dict[RuleId, ThresholdOverride] = {}
    """Keyed by a default threshold's rule id (docs/alarms.md), e.g. ``spo2_low``."""
    inactivity_hours: float | None = Field(default=None, gt=0, le=24)
    """No movement in the home for this long in the daytime raises an alarm (default 4)."""
    schedule: list[ScheduledMeasurement] = []
    combined: list[CombinedRule] = []
    pmd_consent: bool = False
    """She has consented to her measurements going to Pasientens måledata (Helsenorge): while
    set, they are sent there in batches (docs/fhir.md, "Measurements to PMD")."""

    @model_validator(mode="after")
    def _builds(self) -> Self:
        unknown = set(self.thresholds) - set(_DEFAULT_THRESHOLDS)
        if unknown:
            raise ValueError(
                f"no default threshold {sorted(unknown)[0]!r}; known: {sorted(_DEFAULT_THRESHOLDS)}"
            )
        try:
            self.rules(ZoneInfo("UTC"))
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return self

    def rules(self, tz: ZoneInfo) -> PatientRules:
        overrides: dict[str, Rule | None] = {}
        for rule_id, change in self.thresholds.items():
            default = _DEFAULT_THRESHOLDS[rule_id]
            if not change.enabled:
                overrides[rule_id] = None
            elif change.limit is not None:
                overrides[rule_id] = default.with_limit(change.limit, change.margin)
        if self.inactivity_hours is not None:
            overrides["inactivity"] = InactivityRule(after=timedelta(hours=self.inactivity_hours))
        extra: list[Rule] = [
            ScheduleRule(
                s.rule_id, tuple(s.codes), s.window_start, s.deadline, frozenset(s.weekdays)
            )
            for s in self.schedule
        ]
        for combined in self.combined:
            children: tuple[Rule, ...] = tuple(
                ThresholdRule(
                    f"c{n}",
                    (c.code,),
                    c.comparison,
                    c.limit,
                    c.unit,
                    combined.severity,
                    c.margin,
                    COMBINED.ref,
                )
                for n, c in enumerate(combined.conditions, start=1)
            )
            extra.append(Composite(combined.rule_id, combined.op, children, combined.severity))
        return PatientRules.default(tz, overrides, tuple(extra))
