"""Settings of the care platform service (TOML file and/or environment, see README)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.auth import AuthSettings
from tryggheim.mqtt import MqttSettings


class TimeSeriesFlavour(StrEnum):
    INFLUXDB2 = "influxdb2"
    VICTORIAMETRICS = "victoriametrics"


class TimeSeriesSettings(BaseModel):
    """InfluxDB 2.x/3.x, or VictoriaMetrics (which accepts the same /api/v2/write)."""

    url: str
    flavour: TimeSeriesFlavour = TimeSeriesFlavour.INFLUXDB2
    """Both accept the same writes; deleting a patient's series differs."""
    token: SecretStr = SecretStr("")
    org: str = "tryggheim"
    bucket: str = "tryggheim"
    batch_size: int = Field(default=1000, ge=1)


class Hl7Settings(BaseModel):
    sending_application: str = "TRYGGHEIM"
    sending_facility: str = "TRYGGHEIM"
    settle_s: float = Field(default=2.0, ge=0)
    """Wait this long after a measurement arrives before composing its ORU^R01, so values of
    one session that travelled in different batches go out in one message."""
    ack_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: float = Field(default=15.0, gt=0)


class BrokerAccountsSettings(BaseModel):
    """Where provisioning writes the central broker's password file (home gateways are broker
    users). Unset: gateways are still registered, and the file is written with
    ``tryggheim gateway broker-passwords``."""

    password_file: Path | None = None
    base_password_file: Path | None = None
    """Static users (the platform's ingest user, operators) copied to the top of the file."""


class AlarmSettings(BaseModel):
    tick_s: float = Field(default=30.0, gt=0)
    """How often the time-based rules (schedule, inactivity, silence, offline) are checked."""
    escalation_check_s: float = Field(default=5.0, gt=0)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRYGGHEIM_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    database_url: str = "sqlite+aiosqlite:///tryggheim.db"
    mqtt: MqttSettings
    ingest_client_id: str = "tryggheim-ingest-1"
    """Each ingest worker needs its own id; they share the subscription group ``ingest``."""
    timeseries: TimeSeriesSettings | None = None
    hl7: Hl7Settings = Hl7Settings()
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    timezone: str = "Europe/Oslo"
    auth: AuthSettings = AuthSettings()
    broker_accounts: BrokerAccountsSettings = BrokerAccountsSettings()
    alarms: AlarmSettings = AlarmSettings()
    retention_interval_s: float = Field(default=3600.0, gt=0)
