"""The home gateway's configuration (TOML, see docs/edge-config.md and examples/edge.toml)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge.sensors import SensorSettings
from tryggheim.codes import DeviceKind
from tryggheim.mqtt import MqttSettings
from tryggheim.wire import BLE_ADDRESS_PATTERN, GATEWAY_ID_PATTERN


class BleBackend(StrEnum):
    BLUEZ = "bluez"
    """The platform's default bleak backend: BlueZ over D-Bus on a Raspberry Pi."""
    BUMBLE = "bumble"
    """bumble host stack on an HCI transport (a USB dongle, or a simulated radio)."""


class BleSettings(BaseModel):
    backend: BleBackend = BleBackend.BLUEZ
    hci_transport: str | None = None
    """bumble transport spec, e.g. ``usb:0`` or ``tcp-client:127.0.0.1:9000``."""


class DeviceSettings(BaseModel):
    address: str = Field(pattern=BLE_ADDRESS_PATTERN)
    kind: DeviceKind
    bond: bool = False
    """Pair on every connection before subscribing (devices that require an encrypted link).
    Without it the reader still pairs when a subscription is refused for lack of encryption."""
    set_clock: bool = True
    """Write Current Time (0x2A2B) when the device's clock is off by more than the reader's
    tolerance. Off for a device whose clock the patient keeps deliberately (rare)."""

    @field_validator("address", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRYGGHEIM_EDGE_", env_nested_delimiter="__", extra="forbid"
    )

    gateway_id: str = Field(pattern=GATEWAY_ID_PATTERN)
    timezone: str = "Europe/Oslo"
    outbox_path: Path
    outbox_quota_mb: float = Field(default=1024, gt=0)
    """Disk the outbox may use; a day offline in a busy home takes a few MB."""
    outbox_warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    """The status raises ``outbox_nearly_full`` at this share of the quota."""
    uplink: MqttSettings
    ble: BleSettings = BleSettings()
    devices: list[DeviceSettings] = []
    home_broker: MqttSettings | None = None
    """The home's local broker, where Zigbee2MQTT publishes the home sensors."""
    sensors: list[SensorSettings] = []
    batch_size: int = Field(default=200, ge=1, le=5000)
    resend_after_s: float = Field(default=20.0, gt=0)
    """Resend everything not yet committed when no ack has come for this long."""
    status_interval_s: float = Field(default=30.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
