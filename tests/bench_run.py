"""Running a benchmark as a user does, for the tests that run each one with a tiny load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bench_lines(script: str, *args: str, timeout: float, **options: Any) -> list[str]:
    """``bench/<script>`` (or ``-m bench.<name>`` when ``script`` starts with ``-m``) run in this
    interpreter with ``args``: it must exit 0 (else the tail of its stderr fails the test); the
    lines it printed."""
    command = ["-m", script[3:]] if script.startswith("-m ") else [str(ROOT / "bench" / script)]
    done = subprocess.run(
        [sys.executable, *command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **options,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed: str = done.stdout
    return printed.strip().splitlines()
