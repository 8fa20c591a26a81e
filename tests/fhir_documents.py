"""Stand-in closed-alarm documents for the FHIR transport tests and bench/fhir.py: small VKP-shaped
``document`` Bundles that the official R4 JSON Schema and fhir.resources accept, named (Bundle
.identifier) after the alarm. The platform's own builder (gateway/fhir/document.py) is wired in
the composition root; the transport treats a document as JSON with an identifier either way."""

from __future__ import annotations

import uuid
from typing import Any

IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"
_NAMESPACE = uuid.UUID("6f1d4c0e-4b0a-4c55-9d1e-0c6b1e7a0f17")


def alarm_uuid(alarm_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"alarm/{alarm_id}"))


def closed_alarm_document(
    alarm_id: int, *, note: str = "Funnet på gulvet, ingen skade."
) -> dict[str, Any]:
    composition_id, issue_id = alarm_uuid(alarm_id * 3 + 1), alarm_uuid(alarm_id * 3 + 2)
    patient = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15076500565"}}
    return {
        "resourceType": "Bundle",
        "type": "document",
        "identifier": {"system": IDENTIFIER_SYSTEM, "value": f"urn:uuid:{alarm_uuid(alarm_id)}"},
        "timestamp": "2026-12-06T21:15:00+01:00",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{composition_id}",
                "resource": {
                    "resourceType": "Composition",
                    "status": "final",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]},
                    "subject": patient,
                    "date": "2026-12-06T21:15:00+01:00",
                    "author": [{"display": "Tryggheim"}],
                    "title": "Fall",
                    "section": [
                        {
                            "title": "Oppfølging",
                            "text": {
                                "status": "generated",
                                "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{note}</div>',
                            },
                            "entry": [{"reference": f"urn:uuid:{issue_id}"}],
                        }
                    ],
                },
            },
            {
                "fullUrl": f"urn:uuid:{issue_id}",
                "resource": {
                    "resourceType": "DetectedIssue",
                    "status": "final",
                    "code": {
                        "coding": [
                            {
                                "system": "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090",
                                "code": "4.1",
                            }
                        ]
                    },
                    "patient": patient,
                    "identifiedDateTime": "2026-12-06T21:02:00+01:00",
                },
            },
        ],
    }


def invalid_document(alarm_id: int) -> dict[str, Any]:
    """One a receiver refuses: a Composition status FHIR does not have."""
    document = closed_alarm_document(alarm_id)
    document["entry"][0]["resource"]["status"] = "finished"
    return document
