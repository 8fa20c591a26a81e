"""bench/alarm_steps.py with a tiny load: it runs, prints its JSON line with the transaction,
statement and alarm-step costs, and every alarm it raised went through the four steps to
closed."""

from __future__ import annotations

import json

from bench_run import bench_lines


def test_alarm_steps_bench_takes_every_alarm_to_closed() -> None:
    lines = bench_lines(
        "alarm_steps.py",
        *("--homes", "5", "--transactions", "20", "--cycles", "7"),
        timeout=120,
    )
    result = json.loads(lines[-1])
    assert (result["bench"], result["homes"], result["steps"], result["alarms_closed"]) == (
        "alarm_steps",
        5,
        7 * 4,
        7,
    )
    assert all(result[cost] > 0 for cost in ("transaction_us", "statement_us", "step_us"))
