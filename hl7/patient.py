"""Patient identification in received messages: PID-3 (and MRG-1) identifiers, and which one
is the Norwegian national identity number.

A CX repetition is ``id^check digit^check scheme^assigning authority^identifier type``; the
assigning authority is an HD (``namespace&universal id&universal id type``). Senders mark the
fødselsnummer (or D-number) in one of these ways, all accepted:

* identifier type ``NNNOR``: HL7 table 0203's "NNxxx national person identifier" with Norway's
  ISO 3166 code (what :mod:`hl7.oru` writes); ``NNFNR`` is taken too;
* identifier type ``FNR`` or ``DNR`` (the Norwegian code list for person identifier types);
* assigning authority ``FNR`` or ``DNR``, or the register's OID (:data:`FNR_OID`,
  :data:`DNR_OID`) as its universal id: that register issues nothing else;
* assigning authority ``NOR`` without an identifier type (with one, the type decides: Norway
  is also named as the issuer of H-numbers and passports).

It must also have 11 ASCII digits. Other identifiers (hospital numbers, H-numbers...) are kept
beside it, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hl7.message import Segment

#: OIDs of the fødselsnummer and D-number registers (also used by the HL7 Norway FHIR profiles).
FNR_OID = "2.16.578.1.12.4.1.4.1"
DNR_OID = "2.16.578.1.12.4.1.4.2"

_NATIONAL_ID_TYPES = frozenset({"NNNOR", "NNFNR", "FNR", "DNR"})
_NATIONAL_ID_REGISTERS = frozenset({"FNR", "DNR"})
_NATIONAL_ID_OIDS = frozenset({FNR_OID, DNR_OID})
_ELEVEN_DIGITS = re.compile(r"[0-9]{11}")


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
        """A Norwegian fødselsnummer or D-number (see the module docstring)."""
        authority = self.authority.upper()
        marked = (
            self.type_code.upper() in _NATIONAL_ID_TYPES
            or authority in _NATIONAL_ID_REGISTERS
            or self.authority_id in _NATIONAL_ID_OIDS
            or (authority == "NOR" and not self.type_code)
        )
        return marked and _ELEVEN_DIGITS.fullmatch(self.id) is not None

    @property
    def is_d_number(self) -> bool:
        """A D-number: a national id whose first digit is the day of birth plus 4."""
        return self.is_national_id and self.id[0] in "4567"


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
