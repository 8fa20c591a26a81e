"""Patient identification in received messages: PID-3 (and MRG-1) identifiers, and which one
is the Norwegian national identity number: a fødselsnummer, a D-number, or a felles
hjelpenummer (FH-nummer, issued by Norsk helsenett to people without either, e.g. newborns and
visitors: 11 digits, the first 8 or 9, the last two mod-11 control digits computed as for a
fødselsnummer; its register's OID is :data:`FHN_OID`, its type code ``FHN`` in the Norwegian
code list 8327).

A CX repetition is ``id^check digit^check scheme^assigning authority^identifier type``; the
assigning authority is an HD (``namespace&universal id&universal id type``). Senders mark the
fødselsnummer (or D-number) in one of these ways, all accepted:

* identifier type ``NNNOR``: HL7 table 0203's "NNxxx national person identifier" with Norway's
  ISO 3166 code (what :mod:`hl7.oru` writes); ``NNFNR`` is taken too;
* identifier type ``FNR``, ``DNR`` or ``FHN`` (code list 8327, person identifier types);
* assigning authority ``FNR``, ``DNR`` or ``FHN``, or the register's OID (:data:`FNR_OID`,
  :data:`DNR_OID`, :data:`FHN_OID`) as its universal id: that register issues nothing else;
* assigning authority ``NOR`` without an identifier type (with one, the type decides: Norway
  is also named as the issuer of H-numbers and passports).

It must also have 11 ASCII digits, and an FH-nummer (first digit 8 or 9: no fødselsnummer or
D-number starts so) valid control digits. Which of the three it is follows from the number
(:func:`national_id_kind`), so the platform stores the number only. Other identifiers (hospital
numbers, H-numbers...) are kept beside it, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from hl7.message import Segment

#: OIDs of the fødselsnummer and D-number registers (also used by the HL7 Norway FHIR profiles).
FNR_OID = "2.16.578.1.12.4.1.4.1"
DNR_OID = "2.16.578.1.12.4.1.4.2"
#: OID of the felles hjelpenummer (FH-nummer) register kept by Norsk helsenett.
FHN_OID = "2.16.578.1.12.4.1.4.3"

_NATIONAL_ID_TYPES = frozenset({"NNNOR", "NNFNR", "FNR", "DNR", "FHN"})
_NATIONAL_ID_REGISTERS = frozenset({"FNR", "DNR", "FHN"})
_NATIONAL_ID_OIDS = frozenset({FNR_OID, DNR_OID, FHN_OID})
_ELEVEN_DIGITS = re.compile(r"[0-9]{11}")
_CONTROL_WEIGHTS = ((3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))


class NationalIdKind(StrEnum):
    """The three Norwegian national identity numbers, by their code in code list 8327."""

    FNR = "FNR"
    """Fødselsnummer."""
    DNR = "DNR"
    """D-number: first digit the day of birth plus 4 (4–7)."""
    FHN = "FHN"
    """Felles hjelpenummer: first digit 8 or 9."""

    @property
    def oid(self) -> str:
        return {"FNR": FNR_OID, "DNR": DNR_OID, "FHN": FHN_OID}[self.value]


def national_id_kind(number: str) -> NationalIdKind:
    """Which national identity number ``number`` (11 digits) is, from its first digit."""
    if number[:1] in ("8", "9"):
        return NationalIdKind.FHN
    return NationalIdKind.DNR if number[:1] in ("4", "5", "6", "7") else NationalIdKind.FNR


def has_valid_control_digits(number: str) -> bool:
    """Whether the mod-11 control digits (the last two of 11) of a fødselsnummer, D-number or
    FH-nummer are right."""
    if _ELEVEN_DIGITS.fullmatch(number) is None:
        return False
    digits = [int(c) for c in number]
    for position, weights in zip((9, 10), _CONTROL_WEIGHTS, strict=True):
        control = -sum(w * d for w, d in zip(weights, digits, strict=False)) % 11
        if control == 10 or control != digits[position]:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Identifier:
    """One CX: an identifier and who issued it."""

    id: str
    type_code: str = ""
    """CX-5, e.g. ``NNNOR``, ``FNR``, ``MR``."""
    authority: str = ""
    """CX-4.1, the assigning authority's namespace id, e.g. ``FNR`` or a hospital's code."""
    authority_id: str = ""
    """CX-4.2, the assigning authority's universal id (an OID)."""

    @property
    def is_national_id(self) -> bool:
        """A Norwegian fødselsnummer, D-number or FH-nummer (see the module docstring)."""
        authority = self.authority.upper()
        marked = (
            self.type_code.upper() in _NATIONAL_ID_TYPES
            or authority in _NATIONAL_ID_REGISTERS
            or self.authority_id in _NATIONAL_ID_OIDS
            or (authority == "NOR" and not self.type_code)
        )
        if not marked or _ELEVEN_DIGITS.fullmatch(self.id) is None:
            return False
        # FH-numbers are new and checked as documented; older fødselsnummer/D-number data
        # (test patients, registers' own oddities) is taken on its 11 digits as before.
        return national_id_kind(self.id) is not NationalIdKind.FHN or has_valid_control_digits(
            self.id
        )


def identifiers(segment: Segment, n: int) -> tuple[Identifier, ...]:
    """Every identifier in field ``n`` (a repeating CX), in the sender's order; repetitions
    without an id are skipped."""
    found = []
    for rep in range(1, segment.repetitions(n) + 1):
        ident = segment.get(n, 1, repetition=rep)
        if isinstance(ident, str) and ident.strip():
            found.append(
                Identifier(
                    ident.strip(),
                    type_code=segment.value(n, 5, repetition=rep).strip(),
                    authority=segment.value(n, 4, 1, rep).strip(),
                    authority_id=segment.value(n, 4, 2, rep).strip(),
                )
            )
    return tuple(found)


def national_id(candidates: Iterable[Identifier]) -> Identifier | None:
    """The first Norwegian national identity number among ``candidates``."""
    return next((i for i in candidates if i.is_national_id), None)
