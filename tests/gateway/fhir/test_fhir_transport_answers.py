"""What the FHIR transport makes of a destination's answers (gateway/fhir/transport.py), for any
body a server may send: never an exception, a verdict the queue can act on."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.fhir.helseid import Reply
from gateway.fhir.transport import JftClient, Verdict, _outcome, outcome_summary

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
#: OperationOutcome-shaped bodies whose parts may be of any type.
OUTCOMES = st.fixed_dictionaries(
    {"resourceType": st.just("OperationOutcome")},
    optional={
        "issue": JSON
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={"severity": JSON, "code": JSON, "diagnostics": JSON, "details": JSON},
            )
            | JSON,
            max_size=3,
        )
    },
)


@given(
    body=OUTCOMES | JSON, status=st.sampled_from([200, 202, 400, 401, 404, 409, 422, 429, 500, 503])
)
def test_any_answer_gets_a_verdict_and_a_summary(body: Any, status: int) -> None:
    response = Reply(status, {}, json.dumps(body).encode())
    outcome, text = _outcome(response)
    summary = outcome_summary(outcome)
    assert isinstance(summary, str) and summary
    if outcome is not None:
        assert text is not None and json.loads(text) == outcome
    if status >= 400:
        verdict = JftClient._failure(status, outcome, text).verdict
        transient = status >= 500 or status in (401, 429)
        assert verdict is (Verdict.TRANSIENT if transient else Verdict.REFUSED)


def test_not_json_is_no_outcome() -> None:
    assert _outcome(Reply(400, {}, b"<html>bad gateway</html>")) == (None, None)
    assert outcome_summary(None) == "no OperationOutcome"
