"""The read API's ``date`` search parameter: any text is a pair of bounds the record store can
compare, or a 400 (OperationOutcome) — never an exception that becomes a 500."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.routes.fhir import FhirRequestError, date_bounds


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "eq", "ge", "gt", "le", "lt", "sa"]).flatmap(
            lambda prefix: st.one_of(
                st.dates().map(lambda d: prefix + d.isoformat()),
                st.datetimes(timezones=st.timezones()).map(lambda t: prefix + t.isoformat()),
                st.text(max_size=30).map(lambda text: prefix + text),
                st.sampled_from(["9999-12-31", "0001-01-01T00:00:00+14:00"]).map(
                    lambda text: prefix + text
                ),
            )
        ),
        max_size=3,
    )
)
def test_date_parameters_are_bounds_or_a_400(values: list[str]) -> None:
    try:
        since, until = date_bounds(values, ZoneInfo("Europe/Oslo"))
    except FhirRequestError as exc:
        assert exc.status_code == 400
        return
    for bound in (since, until):
        # The record store compares in UTC: every bound must have a UTC time.
        assert bound is None or bound.astimezone(UTC).tzinfo is UTC
