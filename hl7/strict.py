"""hl7apy's strict validation of a message the platform writes: every message we send is
checked with it in the tests (it is too slow, ~100 messages/s, for the sending path).

:func:`validate_strictly` parses the message with ``VALIDATION_LEVEL.STRICT`` twice:

* segment by segment (``parse_segment`` of the message's version): data types, lengths and
  cardinality of every field, component and subcomponent;
* as a whole, with groups (``find_groups=True``) against the message structure of MSH-9.3, and
  ``validate()`` with a report file: hl7apy records values missing from an HL7 table (MSH-15,
  OBX-2, OBX-11 ...) and over-long values as *warnings* that ``validate()`` does not raise; they
  are failures here.

hl7apy has no ``ORU_R40`` structure (IHE PCD-04). HL7 v2.8 defines the ORU^R40 trigger on the
``ORU_R01`` structure, and PCD-04's ``ORU_R40`` has the same segments in the same groups, so
such a message is checked against ``ORU_R01`` (MSH-9 rewritten for the check only).

Z-segments are not allowed here: with ``find_groups`` hl7apy drops the ones that are not at the
end, so they could not be checked (the platform writes none).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse_message
from hl7apy.parser import parse_segment as hl7apy_parse_segment

from hl7.errors import HL7Error
from hl7.message import parse_message

#: Message structures hl7apy lacks, and the structure with the same segments and groups.
_SAME_STRUCTURE = {"ORU_R40": ("ORU^R40^ORU_R40", "ORU^R01^ORU_R01")}


class StrictValidationError(HL7Error):
    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(
            f"hl7apy strict validation: {where}: {problem}",
            hint="the builder writes something HL7 v2 does not allow",
        )


def validate_strictly(text: str) -> None:
    """Raise :class:`StrictValidationError` unless ``text`` passes hl7apy's strict validation
    (errors and warnings) as described in the module docstring."""
    message = parse_message(text)
    version = message.version
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line]
    for number, line in enumerate(lines, start=1):
        if line[:1] == "Z":
            raise StrictValidationError(f"segment {number}", "Z-segments cannot be checked")
        try:
            hl7apy_parse_segment(
                line, version=version, validation_level=VALIDATION_LEVEL.STRICT
            ).validate()
        except Exception as exc:  # hl7apy raises many unrelated types
            raise StrictValidationError(f"segment {number} ({line[:3]})", str(exc)) from exc
    whole = "\r".join(lines) + "\r"
    structure = message.msh.value(9, 3)
    if structure in _SAME_STRUCTURE:
        theirs, ours = _SAME_STRUCTURE[structure]
        whole = whole.replace(f"|{theirs}|", f"|{ours}|", 1)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.txt"
        try:
            parsed = hl7apy_parse_message(
                whole, find_groups=True, validation_level=VALIDATION_LEVEL.STRICT
            )
            parsed.validate(report_file=str(report))
        except Exception as exc:  # hl7apy raises many unrelated types
            raise StrictValidationError(f"message ({structure})", str(exc)) from exc
        problems = report.read_text(encoding="utf-8").strip() if report.exists() else ""
    if problems:
        raise StrictValidationError(f"message ({structure})", problems.replace("\n", "; "))
