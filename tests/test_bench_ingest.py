"""bench/ingest.py with a tiny load and without the Node-RED peers: it runs, prints its JSON
line, and stores every observation exactly once in the record store and in VictoriaMetrics, and
raises exactly the alarms the rules say for the data — with two ingest workers, which commit a
home's batches in either order (each home's readings are still evaluated in seq order). On
SQLite and on a PostgreSQL cluster of the bench's own, whose server CPU is counted as ours."""

from __future__ import annotations

import json

import pytest
from bench_run import bench_lines


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_ingest_bench_counts_every_observation_once(database: str) -> None:
    lines = bench_lines(
        "ingest.py",
        "--gateways",
        "6",
        "--batches-per-gateway",
        "3",
        "--batch-size",
        "10",
        "--workers",
        "2",
        "--crossing-every",
        "2",
        "--database",
        database,
        "--no-peer",
        "--stall-s",
        "5",
        timeout=120,
    )
    result = json.loads(lines[-1])
    assert result["bench"] == "ingest"
    assert result["observations"] == 6 * 3 * 10
    assert "nodered" not in result
    # 18 batches, every other one with an SpO2 episode below the threshold.
    assert result["expected_alarms"] == 9
    assert result["database"] == database
    assert set(result["ours"]) == {"2"}
    for run in result["ours"].values():
        assert run["complete"] is True
        assert run["records"] == {"stored": 180, "lost": 0, "duplicates": 0}, run
        assert run["timeseries"] == {
            "stored": 180,
            "lost": 0,
            "duplicates": 0,
            "unexpected": 0,
        }, run
        assert run["alarms"]["missing"] == 0, run
        assert run["alarms"]["unexpected"] == 0, run
        assert run["alarms"]["raised"] == 9, run
        assert run["cpu_s"] > 0
        if database == "postgresql":
            # Counted in cpu_s (the server did the commits), and shown alone.
            assert 0 < run["db_server_cpu_s"] < run["cpu_s"], run
        else:
            assert "db_server_cpu_s" not in run
        assert run["obs_per_s"] > 0
        assert run["peak_rss_mb"] > 0
