"""bench/ingest_stages.py with a tiny load: it runs, prints its JSON line with every stage (the
heartbeats as the edge sends them among them), and its owned runs raise exactly the alarms the
rules say for the data."""

from __future__ import annotations

import json

from bench_run import bench_lines


def test_ingest_stages_bench_measures_every_stage_and_checks_the_alarms() -> None:
    lines = bench_lines(
        "ingest_stages.py",
        *("--gateways", "6", "--batches-per-gateway", "3", "--batch-size", "10"),
        *("--crossing-every", "2", "--runs", "1"),
        timeout=120,
    )
    result = json.loads(lines[-1])
    assert (result["bench"], result["observations"], result["expected_alarms"]) == (
        "ingest_stages",
        6 * 3 * 10,
        9,
    )
    (run,) = result["runs"]
    assert (run["alarms_missing"], run["alarms_unexpected"]) == (0, 0)
    assert all(run[stage] > 0 for stage in ("decode", "commit", "commit_unowned", "heartbeat"))
    assert result["heartbeats"] == 6 * 4
    assert run["total"] == round(run["decode"] + run["commit"], 2)
