"""The live stream's observations are built as plain JSON data, not through the API's model
(issue 18: the model cost ~3.5 µs of the ingest path per value). The nurse app applies them as
the API shows them, so the two must never drift apart: whatever the observation, the data is
exactly what :class:`ObservationOut` validates and dumps it as."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.schemas import ObservationOut, shown_observation
from tryggheim import codes
from tryggheim.domain import Observation, TimeSource

KNOWN = sorted((m.ref, u.ucum) for m in codes.METRICS.values() for u in m.units)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    code, unit = draw(st.sampled_from(KNOWN))
    at = draw(
        st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
    ).astimezone(draw(st.one_of(st.just(UTC), OFFSETS)))
    return Observation(
        gateway_id=draw(st.text(min_size=1, max_size=8)),
        device_id=draw(st.text(min_size=1, max_size=8)),
        source=draw(st.sampled_from(["ble:2A5E", "mqtt:zigbee2mqtt", "hl7:gp"])),
        code=code,
        value=Decimal(draw(st.integers(-(10**6), 10**6))).scaleb(-draw(st.integers(0, 3))),
        unit=unit,
        time=at,
        time_source=draw(st.sampled_from(TimeSource)),
        flags=tuple(draw(st.lists(st.text(min_size=1, max_size=6), max_size=3))),
        seq=draw(st.integers(1, 2**53)),
    )


@given(observations())
def test_the_streams_data_is_what_the_api_model_shows(obs: Observation) -> None:
    assert obs.seq is not None
    shown = shown_observation(obs, obs.seq, str(obs.value))
    model = ObservationOut(
        id=obs.id,
        gateway_id=obs.gateway_id,
        seq=obs.seq,
        device_id=obs.device_id,
        source=obs.source,
        code=obs.code,
        mdc=obs.mdc,
        display=codes.metric(obs.code).display,
        value=str(obs.value),
        unit=obs.unit,
        time=obs.time,
        time_source=obs.time_source.value,
        flags=list(obs.flags),
    )
    assert shown == model.model_dump(mode="json")
    assert ObservationOut.of_observation(obs, obs.seq, str(obs.value)) == model
