"""bench/fhir.py with tiny sizes: it builds and validates the platform's own documents, drains
its backlog to the JFT-like peer, prints its JSON line, and every document was journaled once."""

from __future__ import annotations

import json
import os

from bench_run import ROOT, bench_lines


def test_fhir_bench_builds_validates_and_journals_every_document() -> None:
    lines = bench_lines(
        "-m bench.fhir",
        *("--backlog", "40", "--documents", "20"),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=240,
    )
    result = json.loads(lines[-1])
    assert result["bench"] == "fhir" and result["ok"] is True
    assert (result["journaled"], result["posts"], result["goal_s"]) == (40, 40, 60)
    assert (result["documents"], result["validation_problems"]) == (20, 0)
    assert result["built_per_s"] > 0 and result["validated_per_s"] > 0
