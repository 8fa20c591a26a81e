"""Configuration files: the shipped examples are valid, and mistakes give one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import EdgeSettings
from gateway.registry.provision import Registry, load_registry
from gateway.settings import GatewaySettings
from tryggheim.config import load_settings
from tryggheim.errors import ConfigError

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_shipped_examples_are_valid() -> None:
    edge = load_settings(EdgeSettings, EXAMPLES / "edge.toml")
    assert edge.gateway_id == "gw-0001" and edge.devices[0].address == "C0:10:00:00:00:01"
    platform = load_settings(GatewaySettings, EXAMPLES / "platform.toml")
    assert platform.timeseries is not None and platform.mqtt.tls_ca is not None
    assert platform.broker_accounts.password_file is not None
    registry = load_registry(EXAMPLES / "registry.toml")
    assert isinstance(registry, Registry) and registry.patients[0].family_name == "Ødegård"
    assert registry.patients[0].home_gateway == "gw-0001"


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (('address = "C0:10:00:00:00:01"', 'address = "C0:10"'), "devices.0.address", "pattern"),
        (('timezone = "Europe/Oslo"', 'timezone = "Europe/Bergen"'), "timezone", "unknown"),
        (("port = 8883", 'port = "many"'), "uplink.port", "integer"),
        (('gateway_id = "gw-0001"', 'gateway = "gw-0001"'), "gateway_id", "Field required"),
        (("[ble]", "[ble\n"), "(syntax)", ""),
    ],
)
def test_a_mistake_names_the_file_the_key_and_the_problem(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    text = (EXAMPLES / "edge.toml").read_text(encoding="utf-8").replace(*change)
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(EdgeSettings, path)
    assert caught.value.source == str(path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_the_command_exits_2_with_one_line_on_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('gateway_id = "Not Valid"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "tryggheim.apps.cli", "edge", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"tryggheim: {path}: ")
    assert "hint:" in line


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(EdgeSettings, tmp_path / "absent.toml")
