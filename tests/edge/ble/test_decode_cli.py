"""``tryggheim ble decode``: the real command in a subprocess, as integrators run it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest


def tryggheim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tryggheim.apps.cli", "ble", "decode", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def decoded(*args: str) -> Any:
    result = tryggheim(*args)
    assert (result.returncode, result.stderr) == (0, "")
    return json.loads(result.stdout)


def test_blood_pressure_as_json() -> None:
    assert decoded("2A35", "1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400") == {
        "unit": "mmHg",
        "systolic": "128",
        "diastolic": "82",
        "mean_arterial_pressure": "97",
        "timestamp": {
            "year": 2025,
            "month": 3,
            "day": 1,
            "hours": 8,
            "minutes": 15,
            "seconds": 0,
        },
        "pulse_rate": "66",
        "user_id": 1,
        "status": ["irregular_pulse"],
    }


def test_uuid_forms_and_grouped_hex() -> None:
    expected = decoded("2a19", "64")
    assert expected == {"battery_level": 100}
    assert decoded("0x2A19", "0x64") == expected
    assert decoded("2A37", "16", "3c", "0004:cd03") == {
        "heart_rate": 60,
        "sensor_contact": "detected",
        "energy_expended": None,
        "rr_intervals": [1024, 973],
    }


def test_special_values_enums_and_unknown_dates() -> None:
    # thermometer: NaN temperature, clock never set, reserved temperature type 12
    assert decoded("2A1C", "06 ffff7f00 00000000000000 0c") == {
        "unit": "celsius",
        "temperature": "nan",
        "timestamp": None,
        "temperature_type": "unknown(12)",
    }
    glucose = decoded("2A18", "0f 0c00 e907 03 01 07 2d 00 c4ff 38c0 11 0100")
    assert glucose["unit"] == "mol/L"
    assert glucose["glucose_concentration"] == "0.0056"
    assert glucose["type"] == "capillary_whole_blood"
    assert glucose["sample_location"] == "finger"
    assert glucose["sensor_status_annunciation"] == ["device_battery_low"]
    assert glucose["time_offset"] == -60
    assert decoded("2A52", "06 00 01 06") == {
        "request_op_code": "report_stored_records",
        "response_code": "no_records_found",
    }
    assert decoded("2A5F", "00 6100 4000")["spo2pr_normal"] == {"spo2": "97", "pr": "64"}


def test_date_time_with_unknown_date_keeps_the_time_of_day() -> None:
    # issue 14: "2A08 00000000121A20" printed {"date_time": null} although 18:26:32 is known
    time_of_day = {"year": 0, "month": 0, "day": 0, "hours": 18, "minutes": 26, "seconds": 32}
    assert decoded("2A08", "00000000121A20") == {"date_time": time_of_day}
    current = decoded("2A2B", "00000000121A20 00 00 00")
    assert current["date_time"] == time_of_day
    assert current["day_of_week"] == "unknown"


def test_observations() -> None:
    observations = decoded(
        "2A35",
        "1e 8000 5200 6100 e907 03 01 08 0f 00 4200 01 0400",
        "--observations",
        "--device-id",
        "C0:10:00:00:00:01",
        "--gateway-id",
        "gw-7",
        "--tz",
        "Europe/Oslo",
    )
    assert [(o["code"], o["mdc"], o["value"], o["unit"]) for o in observations] == [
        ("MDC_PRESS_BLD_NONINV_SYS", 150021, "128", "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_DIA", 150022, "82", "mm[Hg]"),
        ("MDC_PRESS_BLD_NONINV_MEAN", 150023, "97", "mm[Hg]"),
        ("MDC_PULS_RATE_NON_INV", 149546, "66", "{beat}/min"),
    ]
    for o in observations:
        assert o["time"] == "2025-03-01T08:15:00+01:00"
        assert o["time_source"] == "device"
        assert o["flags"] == ["irregular_pulse", "device_user_1"]
        assert (o["device_id"], o["gateway_id"], o["source"]) == (
            "C0:10:00:00:00:01",
            "gw-7",
            "ble:2A35",
        )
        assert o["seq"] is None and o["id"]


def test_observations_at_gateway_time() -> None:
    (o,) = decoded("2A37", "00 48", "--observations", "--received-at", "2025-07-01T06:00:05Z")
    assert (o["code"], o["value"], o["time"], o["time_source"]) == (
        "MDC_ECG_HEART_RATE",
        "72",
        "2025-07-01T06:00:05+00:00",
        "gateway",
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["2A35", "zz"], "HEX"),
        (["2A35", "123"], "HEX"),
        (["2A99", "00"], "0x2A99"),
        (["GATT", "00"], "UUID"),
        (["2A35", "1e 8000"], "diastolic"),
        (["2A19", "65"], "battery_level"),
        (["2A08", "e907 0d 01 00 00 00"], "date_time"),
        (["2A19", "10", "--tz", "Mars/Olympus"], "--tz"),
        (["2A19", "10", "--observations", "--received-at", "2025-01-01T00:00"], "--received-at"),
    ],
)
def test_malformed_input_is_one_line_and_status_2(args: list[str], reason: str) -> None:
    result = tryggheim(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("tryggheim: ")
    assert reason in result.stderr
