"""``tryggheim demo`` as a newcomer runs it (shorter): it exits 0 and its last line is the
verdict, computed by comparing what the simulated devices produced with the record store."""

from __future__ import annotations

import json
import subprocess
import sys

from tryggheim.broker import find_free_port


def test_demo_runs_a_day_and_loses_nothing() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tryggheim.cli",
            "demo",
            "--homes",
            "2",
            "--for",
            "20",
            "--port",
            str(find_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("Dashboard: http://127.0.0.1:")
    verdict = json.loads(lines[-1])
    assert verdict["homes"] == 2
    assert verdict["observations_stored"] == verdict["observations_produced"] > 0
    assert verdict["observations_lost"] == verdict["duplicates"] == verdict["unexpected"] == 0
    assert verdict["hl7_acked"] == verdict["hl7_sent"] == verdict["hl7_received_by_gp"] > 0
