"""bench/ingest_stages.py with a tiny load: it runs, prints its JSON line with every stage, and
its owned runs raise exactly the alarms the rules say for the data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ingest_stages.py"


def test_ingest_stages_bench_measures_every_stage_and_checks_the_alarms() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--gateways", "6", "--batches-per-gateway", "3", "--batch-size", "10"),
            *("--crossing-every", "2", "--runs", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["bench"], result["observations"], result["expected_alarms"]) == (
        "ingest_stages",
        6 * 3 * 10,
        9,
    )
    (run,) = result["runs"]
    assert (run["alarms_missing"], run["alarms_unexpected"]) == (0, 0)
    assert all(run[stage] > 0 for stage in ("decode", "commit", "commit_unowned"))
    assert run["total"] == round(run["decode"] + run["commit"], 2)
