"""``tryggheim demo`` as a newcomer runs it (shorter), started once for the whole module: it
prints a banner with the web app and three accounts that can sign in, keeps its log in the work
directory, exits 0 with the verdict as its last line, stamps nothing later than the wall clock,
and its homes bring the care team the week's incidents: one each, the rest quiet."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tryggheim.apps.broker import find_free_port
from tryggheim.apps.demo import (
    REPLAYED,
    SCENARIOS,
    TIMEZONE,
    ReplayClock,
    Scenario,
    make_homes,
    missed_window,
)

HOMES = 5
RUN_S = 30.0


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    banner: list[str]
    sign_ins: dict[str, tuple[int, dict[str, Any]]]
    """Per user named in the banner: the token endpoint's status and the token's claims."""
    started: datetime
    finished: datetime

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.workdir / "tryggheim.db") as db:
            return db.execute(sql).fetchall()


def _accounts(banner: list[str]) -> dict[str, tuple[str, str]]:
    """user name → (role, password), from the banner's account lines."""
    accounts = {}
    for line in banner:
        words = line.split()
        if len(words) == 3 and words[0] in {"nurse", "coordinator", "admin"}:
            accounts[words[1]] = (words[0], words[2])
    return accounts


def _sign_in(url: str, username: str, password: str) -> tuple[int, dict[str, Any]]:
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    request = urllib.request.Request(url + "api/v1/auth/token", data=form, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            token = json.loads(response.read())["access_token"]
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return response.status, claims
    except urllib.error.HTTPError as e:
        return e.code, {}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("demo")
    started = datetime.now(UTC)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tryggheim.apps.cli",
            "demo",
            "--homes",
            str(HOMES),
            "--for",
            str(RUN_S),
            "--port",
            str(find_free_port()),
            "--workdir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner: list[str] = []
    try:
        for line in process.stdout:
            banner.append(line.rstrip("\n"))
            if line.strip().startswith("Stop with Ctrl-C"):
                break
        url = next(w for line in banner for w in line.split() if w.startswith("http://"))
        sign_ins = {
            user: _sign_in(url, user, password) for user, (_, password) in _accounts(banner).items()
        }
        rest, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
    return DemoRun(
        process.returncode,
        "\n".join(banner) + "\n" + rest,
        stderr,
        workdir,
        banner,
        sign_ins,
        started,
        datetime.now(UTC),
    )


def test_the_demo_loses_nothing_and_says_so_last(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.stderr[-3000:]
    verdict = json.loads(demo.stdout.strip().splitlines()[-1])
    assert verdict["homes"] == HOMES
    assert verdict["observations_stored"] == verdict["observations_produced"] > 0
    assert verdict["observations_lost"] == verdict["duplicates"] == verdict["unexpected"] == 0
    assert verdict["hl7_acked"] == verdict["hl7_sent"] == verdict["hl7_received_by_gp"] > 0


def test_the_banner_names_the_web_app_and_accounts_that_sign_in(demo: DemoRun) -> None:
    assert any("http://127.0.0.1:" in line for line in demo.banner)
    accounts = _accounts(demo.banner)
    assert {role for role, _ in accounts.values()} == {"nurse", "coordinator", "admin"}
    for user, (role, _) in accounts.items():
        status, claims = demo.sign_ins[user]
        assert status == 200, user
        assert claims["roles"] == [role]


def test_the_log_is_in_the_work_directory_not_on_the_terminal(demo: DemoRun) -> None:
    log = (demo.workdir / "demo.log").read_text(encoding="utf-8")
    assert "edge.agent" in log and "gateway.ingest.worker" in log
    assert " INFO " not in demo.stderr and " WARNING " not in demo.stderr
    assert str(demo.workdir / "demo.log") in "\n".join(demo.banner)
    # stdout: the banner and the verdict, nothing in between
    assert demo.stdout.strip().splitlines()[len(demo.banner) :][:-1] == []


def test_no_stored_time_is_later_than_the_wall_clock(demo: DemoRun) -> None:
    rows = demo.query("select time, ingested_at, device_id, code from observations")
    assert rows
    for time, ingested_at, device_id, code in rows:
        at, arrived = (datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (time, ingested_at))
        assert at <= arrived <= demo.finished, (device_id, code, time, ingested_at)


def test_the_sensors_report_until_the_end_of_the_run(demo: DemoRun) -> None:
    (last,) = demo.query(
        "select max(ingested_at) from observations where device_id like '0x00158d%'"
    )[0]
    run_end = demo.started.timestamp() + RUN_S
    # the banner comes a few seconds after the start: the run's last quarter at least
    assert datetime.fromisoformat(last).replace(tzinfo=UTC).timestamp() > run_end - RUN_S / 4


def test_each_incident_happens_once_in_its_home_and_the_rest_is_quiet(demo: DemoRun) -> None:
    alarms = Counter(
        (family, rule, severity)
        for family, rule, severity in demo.query(
            "select p.family_name, a.rule_id, a.severity from alarms a"
            " join patients p on p.id = a.patient_id"
        )
    )
    assert alarms == Counter(
        {
            ("Ødegård", "systolic_high", "high"): 1,  # above her personal limit of 150
            ("Hansen", "fall", "critical"): 1,
            ("Hansen", "panic", "critical"): 1,
            ("Bjørnstad", "spo2_low", "high"): 1,
            ("Kristiansen", "door_at_night", "high"): 1,
            ("Kristiansen", "blodtrykk_kveld", "medium"): 1,  # the missed blood pressure
        }
    )
    # One fall: one change to "fallen". The detector's periodic report repeats its state, so
    # one that comes while she is still down (on some days' timing) is a reading of 1 too.
    falls = demo.query(
        "select device_id, value from observations where code = 'TRY_EVT_FALL'"
        " order by device_id, time"
    )
    fallen: dict[str, bool] = {}
    onsets = 0
    for device, value in falls:
        onsets += float(value) == 1 and not fallen.get(device, False)
        fallen[device] = float(value) == 1
    assert onsets == 1
    systolic = [
        float(value)
        for (value,) in demo.query(
            "select o.value from observations o join patients p on p.id = o.patient_id"
            " where p.family_name = 'Ødegård' and o.code = 'MDC_PRESS_BLD_NONINV_SYS'"
        )
    ]
    assert min(systolic) <= 150 < max(systolic) < 180  # drifting, under the default limit


# --- the parts, without a run ----------------------------------------------------------------


async def test_the_replay_meets_the_wall_clock_and_never_passes_it() -> None:
    clock = ReplayClock(REPLAYED, replay_s=0.5)
    assert abs(clock.start - (datetime.now(UTC) - REPLAYED + timedelta(seconds=0.5))) < timedelta(
        seconds=0.1
    )
    while (now := clock.now()) < clock.end + timedelta(seconds=0.2):
        assert now <= datetime.now(UTC)
        await asyncio.sleep(0.01)
    assert clock.now() - datetime.now(UTC) < timedelta(seconds=0.05)
    moment = clock.now() + timedelta(seconds=0.1)
    await clock.sleep_until(moment)
    assert datetime.now(UTC) >= moment


_INCIDENT_LABELS = {"fall", "panic", "help arrives", "door at night"}


@settings(max_examples=40, deadline=None)
@given(
    minute_of_day=st.integers(0, 24 * 60 - 1),
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
)
def test_every_incident_is_inside_the_replayed_day_whenever_the_demo_runs(
    minute_of_day: int, day: date
) -> None:
    midnight = datetime.combine(day, datetime.min.time(), TIMEZONE)
    end = (midnight + timedelta(minutes=minute_of_day)).astimezone(UTC)
    homes = make_homes(len(SCENARIOS) + 1, None, replay_end=end)
    incidents: Counter[tuple[Scenario, str]] = Counter()
    for home in homes:
        for planned_day in home.household.incidents:
            for step in home.household.day(planned_day).steps:
                if step.label in _INCIDENT_LABELS:
                    assert end - REPLAYED < step.at <= end, step
                    incidents[(home.scenario, step.label)] += 1
    assert {scenario for scenario, _ in incidents} == {
        Scenario.FALL,
        Scenario.NIGHT_AND_MISSED,
    }
    assert homes[-1].scenario is Scenario.QUIET and not homes[-1].household.incidents
    start, deadline = missed_window(end)
    missed = next(h for h in homes if h.scenario is Scenario.NIGHT_AND_MISSED)
    assert missed.skips_measurements_from is not None
    assert missed.skips_measurements_from.time() == start
    # three hours, closed an hour or more before the end (local hours: DST days may differ)
    skips = missed.skips_measurements_from
    assert end - timedelta(hours=6) <= skips <= end - timedelta(hours=3)
    assert (datetime.combine(day, deadline) - datetime.combine(day, start)) % timedelta(
        days=1
    ) == timedelta(hours=3)
