"""hl7.oru_inbound: IHE PCD-01 ORU^R01 from a third-party Continua gateway, decoded to whole
dataclasses (observations and the rows that could not be taken in); fuzzed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hl7.errors import ErrorCode, MessageContentError, MessageError, UnsupportedMessageError
from hl7.inbound import decode_inbound
from hl7.message import Segment, decode_message
from hl7.oru_inbound import ObservationProblem, ReceivedObservation, ReceivedOru, decode_oru
from hl7.patient import Identifier
from tryggheim import codes

CET = timezone(timedelta(hours=1))
AT_0815 = datetime(2025, 3, 1, 8, 15, tzinfo=CET)
CUFF = "1234567890ABCDEF"

# As a Continua (H.812) WAN gateway writes it: the gateway's own MDS (OBX-4 "0") with device
# attributes, the cuff's MDS, a VMD/channel row, metrics with MDC or UCUM units, one metric
# without OBX-14 (OBR-7 applies), a Z-segment between OBX rows, and rows the platform cannot
# take in. LF line ends and UTF-8.
CONTINUA = (
    "MSH|^~\\&|AHD^0123456789ABCDEF^EUI-64|Continua|TRYGGHEIM|BAERUM|20250301081630+0100||"
    "ORU^R01^ORU_R01|AHD0001|P|2.6|||NE|AL||UNICODE UTF-8|||"
    "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\n"
    "PID|||15076500565^^^NOR^NNFNR||Ødegård^Kari\n"
    "OBR|1|AHD0001^AHD^0123456789ABCDEF^EUI-64||182777000^monitoring of patient^SNOMED-CT|||"
    "20250301081500+0100\n"
    "OBX|1||531981^MDC_MOC_VMS_MDS_AHD^MDC|0|||||||X|||||||"
    "0123456789ABCDEF^^0123456789ABCDEF^EUI-64\n"
    "OBX|2|ST|531970^MDC_ID_MODEL_MANUFACTURER^MDC|0.0.0.1|Acme||||||R\n"
    "OBX|3||528391^MDC_DEV_SPEC_PROFILE_BPM^MDC|1|||||||X|||||||"
    "12:34:56:78:90:ab:cd:ef^^12:34:56:78:90:ab:cd:ef^EUI-64\n"
    "OBX|4||150020^MDC_PRESS_BLD_NONINV^MDC|1.0.1|||||||X|||20250301081500+0100\n"
    "OBX|5|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.1.1|120.50|266016^MDC_DIM_MMHG^MDC|||||R|||"
    "20250301081500+0100\n"
    "OBX|6|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.0.1.2|80|mm[Hg]^mm[Hg]^UCUM|||||R|||"
    "20250301081500+0100\n"
    "ZXT|vendor trace|42\n"
    "OBX|7|NM|^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.0.1.3|+93.0|^MDC_DIM_MMHG^MDC|||||R\n"
    "OBX|8|NM|8867-4^Heart rate^LN^149546^MDC_PULS_RATE_NON_INV^MDC|1.0.0.4|64|"
    "/min^per minute^UCUM^264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||20250301081500+0100\n"
    "OBX|9|NM|150999^MDC_SOMETHING_NEW^MDC|1.0.0.5|5|262656^MDC_DIM_DIMLESS^MDC|||||R|||"
    "20250301081500+0100\n"
    "OBX|10|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.0.6|97|percent^^LOCAL|||||R|||"
    "20250301081500+0100\n"
    "OBX|11|NM|150364^MDC_TEMP_BODY^MDC|1.0.0.7|1E2|268192^MDC_DIM_DEGC^MDC|||||R|||"
    "20250301081500+0100\n"
    "OBX|12|NM|150364^MDC_TEMP_BODY^MDC|1.0.0.8|37.2|268192^MDC_DIM_DEGC^MDC|||||R|||20250301081500\n"
    "ZXT|end\n"
).encode()


def _obs(
    metric: codes.MetricCode, value: str, unit: codes.Unit, position: str
) -> ReceivedObservation:
    return ReceivedObservation(metric, Decimal(value), unit, AT_0815, position, CUFF)


def test_continua_gateway_message() -> None:
    decoded = decode_inbound(decode_message(CONTINUA))
    assert decoded == ReceivedOru(
        control_id="AHD0001",
        national_id="15076500565",
        identifiers=(Identifier("15076500565", "NNFNR", "NOR"),),
        observations=(
            _obs(codes.NIBP_SYS, "120.50", codes.MMHG, "1.0.1.1"),
            _obs(codes.NIBP_DIA, "80", codes.MMHG, "1.0.1.2"),
            _obs(codes.NIBP_MEAN, "+93.0", codes.MMHG, "1.0.1.3"),
            _obs(codes.PULSE_NIBP, "64", codes.BEATS_PER_MIN, "1.0.0.4"),
        ),
        problems=(
            ObservationProblem(
                "OBX^9^3",
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                "observation '150999^MDC_SOMETHING_NEW^MDC' is not an MDC code the platform knows",
                "150999^MDC_SOMETHING_NEW^MDC",
                "5",
            ),
            ObservationProblem(
                "OBX^10^6",
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                "unit 'percent^^LOCAL' is neither an MDC unit nor a UCUM code the platform knows",
                "150456^MDC_PULS_OXIM_SAT_O2^MDC",
                "97",
            ),
            ObservationProblem(
                "OBX^11^5",
                ErrorCode.DATA_TYPE_ERROR,
                "'1E2' is not a number (NM)",
                "150364^MDC_TEMP_BODY^MDC",
                "1E2",
            ),
            ObservationProblem(
                "OBX^12^14",
                ErrorCode.DATA_TYPE_ERROR,
                "'20250301081500' has no UTC offset (+ZZZZ) and no default time zone is configured",
                "150364^MDC_TEMP_BODY^MDC",
                "37.2",
            ),
        ),
        z_segments=(Segment(("ZXT", "vendor trace", "42")), Segment(("ZXT", "end"))),
    )
    assert isinstance(decoded, ReceivedOru)
    assert [str(o.value) for o in decoded.observations] == ["120.50", "80", "93.0", "64"]


def test_latin1_v23_with_a_default_zone() -> None:
    data = (
        "MSH|^~\\&|GW|X|TRY|K|20250301081630||ORU^R01|G1|P|2.3||||||8859/1\r"
        "PID|||12345^^^HOSP^MR||Ødegård^Kari\r"
        "OBR|1|||x|||20250301081500\r"
        "OBX|1|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.1|72.40|kg\r"
    ).encode("latin-1")
    decoded = decode_oru(decode_message(data), default_zone=UTC)
    assert decoded == ReceivedOru(
        control_id="G1",
        national_id=None,  # the receiver answers "unknown patient" (hl7.errors.UnknownPatientError)
        identifiers=(Identifier("12345", "MR", "HOSP"),),
        observations=(
            ReceivedObservation(
                codes.BODY_WEIGHT,
                Decimal("72.40"),
                codes.KILOGRAM,
                datetime(2025, 3, 1, 8, 15, tzinfo=UTC),
                "1.0.0.1",
                None,
            ),
        ),
        problems=(),
    )


def test_missing_time_is_a_problem_not_a_crash() -> None:
    data = (
        b"MSH|^~\\&|GW|X|TRY|K|20250301081630+0100||ORU^R01|G2|P|2.6\r"
        b"PID|||15076500565^^^^FNR\r"
        b"OBX|1|NM|150456^^MDC|1.0.0.1|97|%\r"
    )
    (problem,) = decode_oru(decode_message(data)).problems
    assert (problem.location, problem.code) == ("OBX^1^14", ErrorCode.REQUIRED_FIELD_MISSING)


@pytest.mark.parametrize(
    ("data", "error", "code", "location"),
    [
        (b"MSH|^~\\&|A|B|C|D|||ORU^R30|1|P|2.6\rPID|||15076500565^^^^FNR\r",
         UnsupportedMessageError, 201, "MSH^1^9"),
        (b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.6\rOBR|1\r", MessageContentError, 100, "PID"),
        (b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.6\rPID|||15076500565^^^^FNR\rOBR|1\r"
         b"PID|||41017012345^^^^DNR\r", MessageContentError, 100, "PID^2"),
    ],
)  # fmt: skip
def test_refusals(data: bytes, error: type[MessageError], code: int, location: str) -> None:
    with pytest.raises(error) as info:
        decode_inbound(decode_message(data))
    assert (info.value.code, info.value.location) == (code, location)


def test_repeated_pid_of_the_same_patient_is_fine() -> None:
    data = (
        b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.6\rPID|||15076500565^^^^FNR\rPID|||15076500565^^^^FNR\r"
    )
    assert decode_oru(decode_message(data)).national_id == "15076500565"


_pieces = st.sampled_from(
    ["|", "^", "~", "&", "\\", "\r", "\n", '""', "OBX", "OBR", "PID", "ZZ9", "NM", "ST", "1",
     "1.0.0.1", "150021", "MDC", "UCUM", "mm[Hg]", "266016", "120.5", "-", ".", "E",
     "20250301081500", "+0100", "EUI-64", "0123456789ABCDEF", "15076500565", "FNR"]
)  # fmt: skip


@given(st.lists(_pieces, max_size=80).map("".join))
def test_decoder_raises_only_typed_errors(body: str) -> None:
    text = f"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.6\rPID|||15076500565^^^^FNR\r{body}"
    try:
        decoded = decode_oru(decode_message(text.encode()))
    except MessageError:
        return
    for observation in decoded.observations:
        assert observation.value.is_finite()
        assert observation.time.utcoffset() is not None
    assert all(p.location.startswith("O") for p in decoded.problems)
