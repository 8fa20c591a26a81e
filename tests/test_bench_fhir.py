"""bench/fhir.py with tiny sizes: it builds and validates the platform's own documents, drains
its backlog to the JFT-like peer, prints its JSON line, and every document was journaled once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fhir_bench_builds_validates_and_journals_every_document() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.fhir", "--backlog", "40", "--documents", "20"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bench"] == "fhir" and result["ok"] is True
    assert (result["journaled"], result["posts"], result["goal_s"]) == (40, 40, 60)
    assert (result["documents"], result["validation_problems"]) == (20, 0)
    assert result["built_per_s"] > 0 and result["validated_per_s"] > 0
