"""bench/alarm_latency.py with a tiny load: 20 background homes, 5 leaks. It runs end to end
(central and home Mosquitto, the platform and the edge agent as child processes, provisioning
through the CLI, the live stream with a minted token), prints its JSON line and no leak goes
without its alarm."""

from __future__ import annotations

import json

from bench_run import bench_lines


def test_alarm_latency_bench_measures_every_leak() -> None:
    lines = bench_lines(
        "alarm_latency.py",
        "--homes",
        "20",
        "--samples",
        "5",
        "--warmup-samples",
        "1",
        "--background-interval-s",
        "2",
        "--status-interval-s",
        "4",
        "--pause-s",
        "0.1",
        "--timeout-s",
        "5",
        timeout=45,
    )
    assert len(lines) == 1, lines
    result = json.loads(lines[0])
    assert result["bench"] == "alarm_latency"
    assert result["homes"] == 20
    assert result["samples"] == 5
    assert result["missed"] == 0
    assert result["goal_p99_ms"] == 250
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["max_ms"]
    # The split: the home's part and the platform's both measured, and together the whole.
    assert result["home_p50_ms"] > 0
    assert result["platform_p50_ms"] > 0
    assert result["home_p50_ms"] < result["max_ms"]
    assert result["background_batches_per_s"] > 0
    assert result["background_failures"] == 0
    assert result["platform_cpu_s"] > 0
