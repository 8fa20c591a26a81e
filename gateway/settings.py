"""Settings of the care platform service (TOML file and/or environment, see README)."""

from __future__ import annotations

import ssl
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.auth.settings import AuthSettings
from gateway.fhir.settings import FhirSettings
from gateway.fhir.transport_settings import FhirOutboundSettings
from tryggheim.mqtt import MqttSettings

#: A SQLite file in the working directory: what a first try or the demo needs.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///tryggheim.db"

#: URL scheme as users write it → the asyncio driver the record store runs on.
_DATABASE_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}
ACCEPTED_DATABASE_URLS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db or postgresql://user:password@host/db"
    " (also with the drivers named: sqlite+aiosqlite://, postgresql+psycopg://)"
)


def normalise_database_url(url: str) -> str:
    """The record store's URL as users and runbooks write it, with the asyncio driver the
    platform uses named. ``ValueError`` (naming the scheme, never the password) for anything
    else."""
    scheme, separator, rest = url.strip().partition("://")
    driver = _DATABASE_DRIVERS.get(scheme.lower()) if separator else None
    if driver is None:
        shown = f"scheme {scheme!r}" if separator else "no scheme://"
        raise ValueError(f"unusable database URL ({shown}); use {ACCEPTED_DATABASE_URLS}")
    if driver == "sqlite+aiosqlite" and not (rest.startswith("/") and rest.strip("/")):
        raise ValueError(f"a SQLite URL needs a file path; use {ACCEPTED_DATABASE_URLS}")
    if driver == "postgresql+psycopg" and not rest:
        raise ValueError(f"a PostgreSQL URL needs a host or database; use {ACCEPTED_DATABASE_URLS}")
    return f"{driver}://{rest}"


#: A record-store URL in settings: accepted as users write it, stored with the driver named.
DatabaseUrl = Annotated[str, AfterValidator(normalise_database_url)]


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


class AlertManagerSettings(BaseModel):
    """An IHE PCD ACM alert manager that receives the platform's alarms as ORU^R40 (PCD-04)."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    application: str = Field(default="ALERT_MANAGER", max_length=20)
    """MSH-5 of the messages."""
    facility: str = Field(default="ALERT_MANAGER", max_length=20)
    """MSH-6 of the messages."""


class Hl7Settings(BaseModel):
    sending_application: str = Field(default="TRYGGHEIM", max_length=20)
    sending_facility: str = Field(default="TRYGGHEIM", max_length=20)
    settle_s: float = Field(default=2.0, ge=0)
    """Wait this long after a measurement arrives before composing its ORU^R01, so values of
    one session that travelled in different batches go out in one message. Also how often the
    outbound queue is looked at when nothing wakes it."""
    ack_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: float = Field(default=15.0, gt=0)
    """First wait before resending a message after a timeout, a lost connection or AR/CR; it
    doubles with each further attempt, up to ``retry_max_s``."""
    retry_max_s: float = Field(default=600.0, gt=0)
    alert_manager: AlertManagerSettings | None = None
    """Where alarms go as ORU^R40 (IHE PCD-04); none are sent when unset."""
    alert_lookback_s: float = Field(default=86400.0, gt=0)
    """Closed alarms changed longer ago than this are not reported (e.g. when an alert manager
    is configured on a platform that already has a history of alarms); open ones always are."""
    tls_ca: Path | None = None
    """PEM of the CA(s) that sign the GP and alert-manager endpoints: with it every outbound
    MLLP connection is TLS, and the peer's certificate must match its host name."""

    def client_ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_ca is None:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


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


class Hl7ListenSettings(BaseModel):
    """The platform's MLLP endpoint for ADT and ORU^R01 from hospitals, GPs and gateways."""

    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)
    tls_cert: Path | None = None
    """PEM certificate chain; with ``tls_key``, the endpoint speaks MLLP over TLS only."""
    tls_key: Path | None = None
    tenant_id: str = "default"
    """Patients registered by ADT belong to this tenant."""
    timezone: str = "Europe/Oslo"
    """HL7 v2 timestamps without an offset are read in this zone."""
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_buffered_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Unfinished frames of all connections together; past it a connection's frame is answered
    AE/CE (busy, send it again) and the connection closed. At least ``max_message_bytes``."""
    read_timeout_s: float = Field(default=30.0, gt=0)
    """A started frame must be complete within this many seconds (a deadline for the whole
    frame, not for each read); a peer must read its ACK within it too."""
    idle_timeout_s: float = Field(default=600.0, gt=0)
    processing_delay_max_s: float = Field(default=30.0, ge=0)
    """While accept-mode messages keep arriving (a sender flushing its queue), their senders
    get their CA first and processing waits for a pause: this long at most."""

    @model_validator(mode="after")
    def _consistent(self) -> Hl7ListenSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        if self.max_buffered_bytes < self.max_message_bytes:
            raise ValueError("max_buffered_bytes must be at least max_message_bytes")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class RecordStoreSettings(BaseSettings):
    """What the commands that work on the record store alone read from the platform's file
    (and environment): the rest of the file, e.g. ``[mqtt]``, may be missing."""

    model_config = SettingsConfigDict(
        env_prefix="TRYGGHEIM_GATEWAY_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: DatabaseUrl = DEFAULT_DATABASE_URL


class BrokerPasswordsSettings(RecordStoreSettings):
    """What ``tryggheim gateway broker-passwords`` reads."""

    broker_accounts: BrokerAccountsSettings = BrokerAccountsSettings()


class ErasureSettings(RecordStoreSettings):
    """What ``tryggheim gateway erase-patient`` reads (the patient's series are erased too), and
    ``backup`` and ``restore`` (the time-series is snapshotted, and exported again)."""

    timeseries: TimeSeriesSettings | None = None


class FhirCommandSettings(RecordStoreSettings):
    """What ``tryggheim fhir alarm-document`` reads: the profiles and the municipalities."""

    fhir: FhirSettings = FhirSettings()


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRYGGHEIM_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    database_url: DatabaseUrl = DEFAULT_DATABASE_URL
    mqtt: MqttSettings
    ingest_client_id: str = "tryggheim-ingest-1"
    """Each ingest worker needs its own id; they share the subscription group ``ingest``."""
    timeseries: TimeSeriesSettings | None = None
    hl7: Hl7Settings = Hl7Settings()
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_tls_cert: Path | None = None
    """PEM certificate chain: with ``http_tls_key``, the API and the nurse app are HTTPS only."""
    http_tls_key: Path | None = None

    timezone: str = "Europe/Oslo"
    auth: AuthSettings = AuthSettings()
    broker_accounts: BrokerAccountsSettings = BrokerAccountsSettings()
    alarms: AlarmSettings = AlarmSettings()
    retention_interval_s: float = Field(default=3600.0, gt=0)
    metrics_refresh_s: float = Field(default=15.0, gt=0)
    """How often /metrics re-reads counts from the record store (gateways, alarms, queues)."""
    events_across_processes: bool = False
    """Set when several platform processes serve the API: live events then travel through the
    broker so that every process's streams see every change (docs/scale.md)."""
    hl7_listen: Hl7ListenSettings | None = None
    """Unset: the platform receives no HL7 (it still sends ORU^R01 to GPs)."""
    fhir: FhirSettings = FhirSettings()
    """FHIR R4: profiles claimed, and each tenant's municipality (docs/fhir.md)."""
    fhir_outbound: FhirOutboundSettings | None = None
    """Unset: no closed alarm is journaled (docs/fhir.md, "Transport")."""

    @model_validator(mode="after")
    def _http_tls_pair(self) -> GatewaySettings:
        if (self.http_tls_cert is None) != (self.http_tls_key is None):
            raise ValueError("set both http_tls_cert and http_tls_key, or neither")
        return self


def certificates_in_use(settings: GatewaySettings) -> dict[str, Path]:
    """The PEM files of certificates and CAs the platform uses, by a name for the operator:
    each one's expiry is in /metrics."""
    listen = settings.hl7_listen
    files = {
        "http": settings.http_tls_cert,
        "hl7_listen": listen.tls_cert if listen is not None else None,
        "hl7_ca": settings.hl7.tls_ca,
        "broker_ca": settings.mqtt.tls_ca,
    }
    return {name: path for name, path in files.items() if path is not None}
