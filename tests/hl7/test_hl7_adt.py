"""hl7.adt and hl7.inbound: captured-style ADT messages (as real senders write them) decoded to
whole dataclasses; every refusal typed with its ERR code and location; fuzzed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hl7.adt import (
    VOLVEN_SEX_OID,
    Address,
    AdtMessage,
    PatientAction,
    PersonName,
    Practitioner,
    Sex,
    decode_adt,
)
from hl7.errors import (
    MessageContentError,
    MessageError,
    UnsupportedMessageError,
)
from hl7.inbound import DedupeKey, decode_inbound, dedupe_key
from hl7.message import DEFAULT_DELIMITERS, NULL, Segment, decode_message
from hl7.patient import DNR_OID, FHN_OID, FNR_OID, Identifier, NationalIdKind, national_id_kind

CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))

# A hospital PAS (DIPS-like): v2.5, CRLF, UTF-8 declared, Z-segments in the middle and at the
# end, an escaped '&' in the GP office name, the national id as the second PID-3 repetition.
A01 = (
    "MSH|^~\\&|DIPS|AHUS|TRYGGHEIM|BAERUM|20250301120000+0100||ADT^A01^ADT_A01|AHUS0001|P|2.5|||"
    "AL|NE|NOR|UNICODE UTF-8\r\n"
    "EVN|A01|20250301115930+0100\r\n"
    "PID|1||778899^^^AHUS^PI~15076500565^^^FNR&2.16.578.1.12.4.1.4.1&ISO^NNNOR||"
    "Ødegård^Kari^Marie^^^^L||19650715|F|||Storgata 1^H0201^Bærum^^1337^NOR^H\r\n"
    "ZPI|1|Allergi: penicillin\r\n"
    "PD1|||Sandvika legesenter \\T\\ co|9144889^Lege^Lars\r\n"
    "PV1|1|I|MED^101^1\r\n"
    "ZPV|ward note\r\n"
).encode()

KARI_ID = Identifier("15076500565", "NNNOR", "FNR", FNR_OID)


def test_a01_utf8_crlf_z_segments_everywhere() -> None:
    assert decode_inbound(decode_message(A01)) == AdtMessage(
        event="A01",
        action=PatientAction.CREATE_OR_UPDATE,
        control_id="AHUS0001",
        event_time=datetime(2025, 3, 1, 11, 59, 30, tzinfo=CET),
        national_id="15076500565",
        identifiers=(Identifier("778899", "PI", "AHUS"), KARI_ID),
        name=PersonName("Ødegård", "Kari", "Marie"),
        birth_date=date(1965, 7, 15),
        sex=Sex.FEMALE,
        address=Address("Storgata 1", "H0201", "Bærum", "1337", "NOR"),
        gp=Practitioner("9144889", "Lege", "Lars"),
        z_segments=(
            Segment(("ZPI", "1", "Allergi: penicillin")),
            Segment(("ZPV", "ward note")),
        ),
    )


def test_a08_v23_latin1_lf_nulls_and_no_control_id() -> None:
    # An old municipal system: v2.3, LF line ends, ISO-8859-1 without MSH-18, no MSH-10/MSH-11,
    # the event only in EVN-1, HL7 nulls to delete birth date, address and GP, a Z-segment
    # between PID and PV1.
    data = (
        "MSH|^~\\&|GERICA|BAERUM|TRYGGHEIM|BAERUM|200507011200+0200||ADT|||2.3\n"
        "EVN|A08|\n"
        'PID|||15076500565^^^^FNR||ØDEGÅRD^KARI||""|F|||""\n'
        "ZGE|x|y\n"
        'PD1||||""\n'
        "PV1||O\n"
    ).encode("latin-1")
    message = decode_message(data)
    assert message.charset == "iso8859-1"
    assert decode_inbound(message) == AdtMessage(
        event="A08",
        action=PatientAction.UPDATE,
        control_id="",
        event_time=datetime(2005, 7, 1, 12, 0, tzinfo=CEST),
        national_id="15076500565",
        identifiers=(Identifier("15076500565", "FNR"),),
        name=PersonName("ØDEGÅRD", "KARI"),
        birth_date=NULL,
        sex=Sex.FEMALE,
        address=NULL,
        gp=NULL,
        z_segments=(Segment(("ZGE", "x", "y"), DEFAULT_DELIMITERS, "iso8859-1"),),
    )


def test_a04_v28_d_number_rol_gp_and_home_address() -> None:
    # v2.8: PID-8 is a CWE, a D-number marked only by its assigning authority's OID, two
    # addresses (the home one second), the GP in ROL (FHCP), event time without a UTC offset
    # taken in the configured zone, escapes in the name.
    data = (
        "MSH|^~\\&|HELSE|VESTLAND|TRYGGHEIM|BERGEN|20250301120000+0100||ADT^A04^ADT_A01|"
        "V28-1|P|2.8|||AL|NE||UNICODE UTF-8\r"
        "EVN||20250701083000\r"
        f"PID|1||41017012345^^^&{DNR_OID}&ISO||Berg \\T\\ Sønn^Ola\\S\\Per||19700101|"
        "M^Male^HL70001|||Postboks 4^^Bergen^^5804^NOR^M~Fjellveien 2^^Bergen^^5019^NOR^H\r"
        "ROL|1|AD|FHCP^Family health care professional^HL70443|1234567^Hansen^Hanne\r"
    ).encode()
    decoded = decode_inbound(decode_message(data), default_zone=ZoneInfo("Europe/Oslo"))
    assert decoded == AdtMessage(
        event="A04",
        action=PatientAction.CREATE_OR_UPDATE,
        control_id="V28-1",
        event_time=datetime(2025, 7, 1, 8, 30, tzinfo=ZoneInfo("Europe/Oslo")),
        national_id="41017012345",
        identifiers=(Identifier("41017012345", authority_id=DNR_OID),),
        name=PersonName("Berg & Sønn", "Ola^Per"),
        birth_date=date(1970, 1, 1),
        sex=Sex.MALE,
        address=Address("Fjellveien 2", "", "Bergen", "5019", "NOR"),
        gp=Practitioner("1234567", "Hansen", "Hanne"),
    )
    assert national_id_kind(decoded.national_id) is NationalIdKind.DNR


def test_a03_a31_and_rol_deleting_the_gp() -> None:
    base = "MSH|^~\\&|A|B|C|D|20250301120000+0100||ADT^{event}|{event}|P|2.6\r"
    pid = "PID|1||15076500565^^^NOR||Hansen^Per\r"
    discharge = decode_adt(decode_message((base.format(event="A03") + pid).encode()))
    assert (discharge.action, discharge.event_time) == (
        PatientAction.DISCHARGE,
        datetime(2025, 3, 1, 12, 0, tzinfo=CET),
    )
    assert (discharge.birth_date, discharge.sex, discharge.address, discharge.gp) == (None,) * 4
    person = decode_adt(
        decode_message((base.format(event="A31") + pid + "ROL|1|DE|PP|99^Old^Gp\r").encode())
    )
    assert (person.action, person.gp) == (PatientAction.UPDATE, NULL)


def test_a40_merge() -> None:
    data = (
        b"MSH|^~\\&|DIPS|AHUS|TRY|K|20250301120000+0100||ADT^A40^ADT_A39|M40|P|2.5\r"
        b"EVN|A40|20250301120000+0100\r"
        b"PID|1||15076500565^^^^NNNOR~778899^^^AHUS^PI||Hansen^Per\r"
        b"MRG|41017012345^^^^DNR~555^^^AHUS^PI\r"
    )
    merge = decode_inbound(decode_message(data))
    assert isinstance(merge, AdtMessage)
    assert (merge.action, merge.national_id, merge.prior_national_id) == (
        PatientAction.MERGE,
        "15076500565",
        "41017012345",
    )
    assert merge.prior_identifiers == (
        Identifier("41017012345", "DNR"),
        Identifier("555", "PI", "AHUS"),
    )


GOOD = (
    "MSH|^~\\&|A|B|C|D|20250301120000+0100||ADT^A01|X1|P|{version}\r"
    "PID|1||{pid3}||{name}||{dob}|{sex}\r"
)


def _adt(
    version: str = "2.5",
    pid3: str = "15076500565^^^^FNR",
    name: str = "Hansen^Per",
    dob: str = "",
    sex: str = "",
    extra: str = "",
) -> bytes:
    text = GOOD.format(version=version, pid3=pid3, name=name, dob=dob, sex=sex) + extra
    return text.encode()


@pytest.mark.parametrize(
    ("sex", "msh_17", "stored", "reason"),
    [
        ("F", "", Sex.FEMALE, None),
        ("m", "", Sex.MALE, None),
        ("K", "", Sex.FEMALE, "sex_spelling"),
        ("FEMALE", "", Sex.FEMALE, "sex_spelling"),
        ("Mann", "", Sex.MALE, "sex_spelling"),
        ("1", "NOR", Sex.MALE, "sex_code_list_3101"),
        ("2", "NOR", Sex.FEMALE, "sex_code_list_3101"),
        ("9", "NOR", Sex.UNKNOWN, "sex_code_list_3101"),
        (f"2^Kvinne^{VOLVEN_SEX_OID}", "", Sex.FEMALE, "sex_code_list_3101"),
        ("1", "", Sex.UNKNOWN, "sex_not_understood"),  # a number, but of which list?
        ("X", "NOR", Sex.UNKNOWN, "sex_not_understood"),
    ],
)
def test_an_unusual_sex_is_kept_as_far_as_understood_and_warned(
    sex: str, msh_17: str, stored: Sex, reason: str | None
) -> None:
    """Issue 14: PID-8 ``1`` or ``FEMALE`` refused the whole registration; now the patient is
    registered, the value read as far as it can be, and each alteration is a W warning."""
    data = _adt(sex=sex).replace(b"|P|2.5\r", f"|P|2.5|||||{msh_17}\r".encode())
    adt = decode_adt(decode_message(data))
    assert (adt.national_id, adt.name, adt.sex) == (
        "15076500565",
        PersonName("Hansen", "Per"),
        stored,
    )
    assert [(w.location, w.reason) for w in adt.warnings] == (
        [("PID^1^8", reason)] if reason else []
    )
    assert all(w.code == 103 and repr(sex.split("^")[0]) in w.text for w in adt.warnings)


def test_an_unreadable_event_time_falls_back_to_the_message_time() -> None:
    data = _adt(extra="EVN|A01|yesterday\r")
    adt = decode_adt(decode_message(data))
    assert adt.event_time == datetime(2025, 3, 1, 12, 0, tzinfo=CET)
    assert [(w.location, w.reason) for w in adt.warnings] == [("EVN^1^2", "event_time_unreadable")]
    with pytest.raises(MessageContentError) as refused:  # nothing else to go by
        decode_adt(decode_message(data.replace(b"20250301120000+0100", b"")))
    assert refused.value.location == "EVN^1^2"


def test_a_birth_date_that_is_no_date_is_left_out_and_warned() -> None:
    adt = decode_adt(decode_message(_adt(dob="1965")))
    assert adt.birth_date is None
    ((warning),) = adt.warnings
    assert (warning.location, warning.code, warning.reason) == (
        "PID^1^7",
        102,
        "birth_date_unreadable",
    )


@pytest.mark.parametrize(
    "pid3",
    [
        f"81212121223^^^FHN&{FHN_OID}&ISO^FHN",
        "94545456561^^^^FHN",
        f"81212121223^^^&{FHN_OID}&ISO",
        "81212121223^^^FHN",
    ],
)
def test_an_fh_nummer_is_a_national_identity(pid3: str) -> None:
    """Issue 14: a patient with neither fødselsnummer nor D-number (a newborn, a visitor) is
    registered on her felles hjelpenummer (first digit 8 or 9, mod-11 control digits)."""
    adt = decode_adt(decode_message(_adt(pid3=f"778899^^^AHUS^PI~{pid3}")))
    assert national_id_kind(adt.national_id) is NationalIdKind.FHN
    assert adt.national_id == pid3[:11]


@pytest.mark.parametrize(
    ("data", "error", "code", "location"),
    [
        (_adt(version="2.2"), UnsupportedMessageError, 203, "MSH^1^12"),
        (_adt(version="3.0"), UnsupportedMessageError, 203, "MSH^1^12"),
        (_adt().replace(b"ADT^A01", b"ADT^A02"), UnsupportedMessageError, 201, "MSH^1^9"),
        (_adt().replace(b"ADT^A01", b"SIU^S12"), UnsupportedMessageError, 200, "MSH^1^9"),
        (_adt().replace(b"ADT^A01", b""), UnsupportedMessageError, 200, "MSH^1^9"),
        (_adt(pid3="12345^^^AHUS^MR"), MessageContentError, 101, "PID^1^3"),
        (_adt(pid3="1507650056^^^^FNR"), MessageContentError, 101, "PID^1^3"),  # 10 digits
        (_adt(name='""'), MessageContentError, 101, "PID^1^5"),
        # an FH-nummer with wrong control digits
        (_adt(pid3="81212121224^^^^FHN"), MessageContentError, 101, "PID^1^3"),
        (_adt().split(b"\rPID")[0], MessageContentError, 100, "PID"),
        (_adt(extra="PID|2||41017012345^^^^DNR\r"), MessageContentError, 100, "PID^2"),
        (_adt().replace(b"ADT^A01", b"ADT^A40"), MessageContentError, 100, "MRG"),
        (_adt(extra="MRG|555^^^AHUS\r").replace(b"ADT^A01", b"ADT^A40"), MessageContentError,
         101, "MRG^1^1"),
        (_adt().replace(b"20250301120000+0100", b"20250301120000"), MessageContentError, 102,
         "MSH^1^7"),
        (_adt().replace(b"20250301120000+0100", b""), MessageContentError, 101, "MSH^1^7"),
    ],
)  # fmt: skip
def test_refusals_say_how_to_answer(
    data: bytes, error: type[MessageError], code: int, location: str
) -> None:
    with pytest.raises(error) as info:
        decode_inbound(decode_message(data))
    assert (info.value.code, info.value.location) == (code, location)
    assert info.value.reject is (error is UnsupportedMessageError)
    assert info.value.user_message and info.value.hint


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5.1", "2.6", "2.7.1", "2.8", ""])
def test_versions_accepted(version: str) -> None:
    assert isinstance(decode_inbound(decode_message(_adt(version=version))), AdtMessage)


def test_dedupe_key() -> None:
    message = decode_message(A01)
    assert dedupe_key(message) == DedupeKey("DIPS", "AHUS", "AHUS0001")
    assert dedupe_key(decode_message(b"MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5")) is None


_pieces = st.sampled_from(
    ["|", "^", "~", "&", "\\", "\r", "\n", '""', "PID", "EVN", "PD1", "ROL", "MRG", "ZX1", "1",
     "15076500565", "FNR", "NNNOR", "20250301120000", "+0100", "F", "PP", "DE", "Ø", "\\T\\"]
)  # fmt: skip


@given(
    st.sampled_from(["A01", "A04", "A08", "A31", "A03", "A40", "A02", ""]),
    st.sampled_from(["2.3", "2.5", "2.8", "2.1", ""]),
    st.lists(_pieces, max_size=50).map("".join),
)
def test_decoder_raises_only_typed_errors(event: str, version: str, body: str) -> None:
    text = f"MSH|^~\\&|A|B|C|D|20250301120000+0100||ADT^{event}|1|P|{version}\r{body}"
    try:
        decoded = decode_inbound(decode_message(text.encode()), default_zone=UTC)
    except MessageError:
        return
    assert isinstance(decoded, AdtMessage)
    assert decoded.identifiers[0].id


@pytest.mark.parametrize(
    ("identifier", "national"),
    [
        (Identifier("15076500565", "NNNOR"), True),
        (Identifier("15076500565", "fnr"), True),
        (Identifier("15076500565", "PI", "FNR"), True),  # the register issues nothing else
        (Identifier("15076500565", "", "", FNR_OID), True),
        (Identifier("15076500565", "", "NOR"), True),
        (Identifier("15476500565", "HNR", "NOR"), False),  # an H-number issued in Norway
        (Identifier("15076500565", "MR", "AHUS"), False),
        (Identifier("1507650056X", "FNR"), False),
        (Identifier("150765005651", "FNR"), False),
    ],
)
def test_which_identifier_is_a_national_id(identifier: Identifier, national: bool) -> None:
    assert identifier.is_national_id is national
