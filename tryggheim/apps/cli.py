"""The ``tryggheim`` command. Each subcommand parses its arguments, loads typed settings, and
hands over to the part that does the work; errors from this project end the command with a
one-line reason on stderr and exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tryggheim.errors import ConfigError, TryggheimError
from tryggheim.version import installed_version

if TYPE_CHECKING:
    from gateway.records.store import RecordStore

log = logging.getLogger("tryggheim")

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


async def _edge_run(args: argparse.Namespace) -> int:
    from edge.agent import EdgeAgent
    from edge.commands import load_overrides, overrides_path, with_overrides
    from edge.config import EdgeSettings
    from tryggheim.config import load_settings

    base = load_settings(EdgeSettings, args.config)
    # Commands from the platform (pairing, configuration) are layered over the file; the agent
    # returns when one changed them, and starts again with the result.
    while await EdgeAgent(with_overrides(base, load_overrides(overrides_path(base)))).run():
        log.info("restarting the edge agent with changed settings")
    return 0


async def _edge_status(args: argparse.Namespace) -> int:
    from edge.config import EdgeSettings
    from edge.outbox import Outbox
    from edge.status import edge_status, status_file
    from tryggheim.config import load_settings
    from tryggheim.wire import status_to_json

    settings = load_settings(EdgeSettings, args.config)
    outbox = Outbox(
        settings.outbox_path,
        settings.gateway_id,
        quota_bytes=int(settings.outbox_quota_mb * 1024 * 1024),
    )
    try:
        status = edge_status(
            outbox,
            settings.gateway_id,
            state="unknown",
            warn_fraction=settings.outbox_warn_fraction,
        )
    finally:
        outbox.close()
    body = status_to_json(status)
    # Devices and sensors as the running agent last saw them (written every status interval).
    with contextlib.suppress(FileNotFoundError, ValueError):  # no agent ran, or mid-write
        written = json.loads(status_file(settings).read_text(encoding="utf-8"))
        body |= {k: written[k] for k in ("devices", "sensors", "clock_offset_s") if k in written}
        body["agent_reported_at"] = written.get("time")
    print(json.dumps(body, indent=2))
    return 1 if status.alarms else 0


async def _gateway_run(args: argparse.Namespace) -> int:
    from gateway.service import Platform
    from gateway.settings import GatewaySettings
    from tryggheim.config import load_settings

    settings = load_settings(GatewaySettings, args.config)
    platform = Platform(settings, workers=args.workers)
    log.info("care platform on http://%s:%d/", settings.http_host, settings.http_port)
    await platform.run()
    return 0


async def _gateway_add_tenant(args: argparse.Namespace) -> int:
    from gateway.registry.service import Registry

    async with _record_store(args) as store:
        tenant = await Registry(store).ensure_tenant(args.id, args.name, args.timezone)
    print(json.dumps({"id": tenant.id, "name": tenant.name, "timezone": tenant.timezone}))
    return 0


async def _gateway_add_user(args: argparse.Namespace) -> int:
    from gateway.auth import Role
    from gateway.registry.bootstrap import add_user

    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("tryggheim: give a password of at least 12 characters on stdin", file=sys.stderr)
        return 2
    async with _record_store(args) as store:
        created = await add_user(
            store,
            tenant_id=args.tenant,
            username=args.username,
            display_name=args.display_name or args.username,
            roles=[Role(r) for r in args.role],
            team_names=args.team,
            password=password,
        )
    print(json.dumps({"id": created.user.id, "username": created.user.username}))
    return 0


async def _gateway_broker_passwords(args: argparse.Namespace) -> int:
    from gateway.registry.bootstrap import write_broker_passwords
    from gateway.settings import BrokerPasswordsSettings
    from tryggheim.config import load_settings

    settings = load_settings(BrokerPasswordsSettings, args.config)
    if settings.broker_accounts.password_file is None:
        raise ConfigError(
            str(args.config), "broker_accounts.password_file", "not set: the file to write"
        )
    async with _store_at(settings.database_url) as store:
        count = await write_broker_passwords(store, settings.broker_accounts)
    print(f"wrote {count} home gateways to {settings.broker_accounts.password_file}")
    return 0


@contextlib.asynccontextmanager
async def _record_store(args: argparse.Namespace) -> AsyncIterator[RecordStore]:
    """The record store of the platform file ``--config`` (which needs only ``database_url``)."""
    from gateway.settings import RecordStoreSettings
    from tryggheim.config import load_settings

    settings = load_settings(RecordStoreSettings, args.config)
    async with _store_at(settings.database_url) as store:
        yield store


def _database_option(value: str | None) -> str:
    """``--database`` as the user wrote it (default: the platform's), with its driver named."""
    from gateway.settings import DEFAULT_DATABASE_URL, normalise_database_url

    try:
        return normalise_database_url(value or DEFAULT_DATABASE_URL)
    except ValueError as exc:
        raise ConfigError("command line", "--database", str(exc)) from None


def _store_with_alarms(database_url: str) -> RecordStore:
    """The record store at ``database_url``, with the alarm book: every command that stores
    readings (``hl7 listen`` applying an ORU^R01) evaluates their alarm rules as the platform
    does."""
    from gateway.alarms.book import AlarmBook
    from gateway.records.store import RecordStore

    return RecordStore(database_url, alarms=AlarmBook())


@contextlib.asynccontextmanager
async def _store_at(database_url: str) -> AsyncIterator[RecordStore]:
    """The record store at ``database_url`` (normalised already), migrated."""
    store = _store_with_alarms(database_url)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


async def _gateway_migrate(args: argparse.Namespace) -> int:
    from gateway.records.migrate import current_revision
    from gateway.settings import RecordStoreSettings
    from tryggheim.config import load_settings

    settings = load_settings(RecordStoreSettings, args.config)
    store = _store_with_alarms(settings.database_url)
    try:
        await store.migrate()
        print(f"record store at revision {await current_revision(store.engine)}")
    finally:
        await store.close()
    return 0


async def _gateway_backup(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from gateway.records.backup import back_up
    from gateway.settings import ErasureSettings
    from tryggheim.config import load_settings

    settings = load_settings(ErasureSettings, args.config)
    async with _store_at(settings.database_url) as store:
        manifest = await back_up(store, settings.timeseries, args.to, datetime.now(UTC))
    print(manifest.to_json(), end="")
    return 0


async def _gateway_restore(args: argparse.Namespace) -> int:
    from gateway.records.backup import restore
    from gateway.settings import ErasureSettings
    from tryggheim.config import load_settings

    if not args.yes:
        print(
            "tryggheim: restore replaces everything in the record store; add --yes to go ahead",
            file=sys.stderr,
        )
        return 2
    settings = load_settings(ErasureSettings, args.config)
    # Not migrated first: the backup brings its own schema; `gateway run` migrates it after.
    store = _store_with_alarms(settings.database_url)
    try:
        manifest = await restore(
            store,
            args.backup,
            reexport=settings.timeseries is not None,
            reexport_since=args.timeseries_backed_up_at,
        )
    finally:
        await store.close()
    print(manifest.to_json(), end="")
    return 0


async def _audit_operator(
    store: RecordStore, operator: str, tenant_id: str | None, action: str, purpose: str
) -> None:
    """The audit row of an operator's GDPR command (it names the tenant, not the patient:
    after an erasure she is gone)."""
    from datetime import UTC, datetime

    await store.audit(
        actor=operator,
        tenant_id=tenant_id,
        action=action,
        patient_ids=[None],
        purpose=purpose,
        client="cli",
        now=datetime.now(UTC),
    )


async def _gateway_export_patient(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from gateway.registry.privacy import export_patient
    from gateway.settings import RecordStoreSettings
    from tryggheim.config import load_settings

    settings = load_settings(RecordStoreSettings, args.config)
    async with _store_at(settings.database_url) as store:
        tenant_id = await store.tenant_of(args.national_id)
        export = await export_patient(store, args.national_id, now=datetime.now(UTC))
        await _audit_operator(
            store, args.operator, tenant_id, "export_patient", "GDPR access request"
        )
    print(json.dumps(export, indent=2, ensure_ascii=False))
    return 0


async def _gateway_erase_patient(args: argparse.Namespace) -> int:
    from gateway.registry.privacy import erase_patient
    from gateway.settings import ErasureSettings
    from tryggheim.config import load_settings

    if not args.yes:
        print("tryggheim: erasure cannot be undone; add --yes to go ahead", file=sys.stderr)
        return 2
    settings = load_settings(ErasureSettings, args.config)
    async with _store_at(settings.database_url) as store:
        tenant_id = await store.tenant_of(args.national_id)
        removed = await erase_patient(store, settings.timeseries, args.national_id)
        await _audit_operator(store, args.operator, tenant_id, "erase_patient", "GDPR erasure")
    print(json.dumps({"erased": removed}))
    return 0


async def _gateway_provision(args: argparse.Namespace) -> int:
    from gateway.registry.provision import load_registry, provision
    from gateway.settings import RecordStoreSettings
    from tryggheim.config import load_settings

    settings = load_settings(RecordStoreSettings, args.config)
    registry = load_registry(args.registry)
    store = _store_with_alarms(settings.database_url)
    try:
        await store.migrate()
        count = await provision(store, registry)
    finally:
        await store.close()
    print(f"provisioned {count} patients")
    return 0


async def _hl7_gp_peer(args: argparse.Namespace) -> int:
    import ssl

    from hl7.gp_peer import GPEndpoint

    if (args.tls_cert is None) != (args.tls_key is None):
        print("tryggheim: give both --tls-cert and --tls-key, or neither", file=sys.stderr)
        return 2
    context: ssl.SSLContext | None = None
    if args.tls_cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(args.tls_cert, args.tls_key)
    async with GPEndpoint(host=args.host, port=args.port, ssl=context, log_path=args.log) as gp:
        over = " (MLLP over TLS)" if context is not None else ""
        print(f"GP endpoint listening on {args.host}:{gp.port}{over}", flush=True)
        await asyncio.Event().wait()
    return 0


async def _hl7_listen(args: argparse.Namespace) -> int:
    from gateway.hl7.inbound.service import serve_hl7
    from gateway.settings import Hl7ListenSettings
    from hl7.mllp import MLLPServer

    settings = Hl7ListenSettings(
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tenant_id=args.tenant,
    )

    def started(server: MLLPServer) -> None:
        print(f"HL7 MLLP endpoint listening on {settings.host}:{server.port}", flush=True)

    async with _store_at(_database_option(args.database)) as store:
        await serve_hl7(store, settings, started=started)
    return 0


async def _patients_list(args: argparse.Namespace) -> int:
    from gateway.registry.service import Registry

    async with _store_at(_database_option(args.database)) as store:
        patients = await Registry(store).patients(args.tenant)
    rows = [
        {
            "id": p.id,
            "national_id": p.national_id,
            "family_name": p.family_name,
            "given_name": p.given_name,
            "birth_date": p.birth_date.isoformat() if p.birth_date else None,
            "sex": p.sex,
            "tenant_id": p.tenant_id,
            "care_team_id": p.care_team_id,
            "discharged_at": p.discharged_at.isoformat() if p.discharged_at else None,
            "merged_into_id": p.merged_into_id,
        }
        for p in patients
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            print(
                f"{row['id']:>6}  {row['national_id']}  {row['family_name']}, {row['given_name']}"
            )
    return 0


async def _hl7_oru(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gateway.hl7.outbound.compose import oru_for_observations, read_observations

    message = oru_for_observations(
        read_observations(args.observations),
        national_id=args.patient_id,
        patient_name=args.patient_name,
        device_eui64=args.device_eui64,
        now=datetime.now().astimezone(),
    )
    # One segment per line for the terminal; `hl7 send` turns the line ends back into \r.
    print(message.rstrip("\r").replace("\r", "\n"))
    return 0


async def _hl7_send(args: argparse.Namespace) -> int:
    from hl7.tools import message_from_bytes, send_message

    data = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    raw, ack = await send_message(args.host, args.port, message_from_bytes(data), args.timeout)
    print(raw.decode("utf-8", errors="replace").rstrip("\r").replace("\r", "\n"))
    return 0 if ack.accepted else 1


def _organisation(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from gateway.fhir.settings import Organisation

    if (args.organisation_number is None) != (args.organisation_name is None):
        raise ConfigError(
            "command line", "--organisation-number", "give it with --organisation-name"
        )
    if args.organisation_number is None:
        return None
    try:
        return Organisation(
            organisation_number=args.organisation_number, name=args.organisation_name
        )
    except ValidationError:
        raise ConfigError(
            "command line", "--organisation-number", "nine digits (Enhetsregisteret)"
        ) from None


async def _fhir_observations(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gateway.fhir.resources import fhir_json
    from gateway.fhir.settings import FhirProfiles
    from gateway.fhir.tools import observations_bundle

    built = observations_bundle(
        args.observations,
        national_id=args.patient_id,
        device_eui64=args.device_eui64,
        performer=_organisation(args),
        profiles=FhirProfiles(),
        now=datetime.now().astimezone(),
    )
    for obs in built.skipped:
        log.warning("%s: no FHIR Observation for %s (an event or telemetry)", obs.id, obs.code)
    print(fhir_json(built.bundle, indent=2))
    return 0


async def _fhir_alarm_document(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gateway.fhir.records import document_for_alarm
    from gateway.fhir.resources import fhir_json
    from gateway.settings import FhirCommandSettings
    from tryggheim.config import load_settings

    settings = (
        load_settings(FhirCommandSettings, args.config)
        if args.config is not None
        else FhirCommandSettings()
    )
    url = _database_option(args.database) if args.database else settings.database_url
    async with _store_at(url) as store:
        document = await document_for_alarm(
            store, args.alarm, settings.fhir, datetime.now().astimezone()
        )
    print(fhir_json(document, indent=2))
    return 0


async def _fhir_validate(args: argparse.Namespace) -> int:
    from gateway.fhir.tools import validate_file

    problems = validate_file(args.file)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


async def _ble_decode(args: argparse.Namespace) -> int:
    from edge.ble.decode_cli import run

    return run(args)


async def _demo(args: argparse.Namespace) -> int:
    from tryggheim.apps.demo import DemoOptions, run_demo

    options = DemoOptions(
        homes=args.homes,
        speed=args.speed,
        duration_s=args.for_seconds,
        http_port=args.port,
        workdir=args.workdir,
        verbose=args.verbose,
    )
    return await run_demo(options)


async def _simulate(args: argparse.Namespace) -> int:
    import os

    from pydantic import SecretStr

    from tryggheim.apps.simulate import SimulateOptions, run_simulation

    password = os.environ.get("TRYGGHEIM_SIMULATE_PASSWORD") or sys.stdin.readline().rstrip("\n")
    if not password:
        print(
            "tryggheim: give the admin's password in TRYGGHEIM_SIMULATE_PASSWORD or on stdin",
            file=sys.stderr,
        )
        return 2
    options = SimulateOptions(
        homes=args.homes,
        platform_url=args.platform_url,
        username=args.username,
        password=SecretStr(password),
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        tls_ca=args.tls_ca,
        speed=args.speed,
        duration_s=args.for_seconds,
        workdir=args.workdir,
        prefix=args.gateway_prefix,
    )
    return await run_simulation(options)


def _aware_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if when.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"give the time with its UTC offset: {text!r}")
    return when


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tryggheim", description="Tryggheim home-care platform: edge, platform, HL7, demo."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    edge = commands.add_parser("edge", help="the home gateway agent").add_subparsers(
        dest="edge_command", required=True
    )
    edge_run = edge.add_parser("run", help="read devices and forward to the platform")
    edge_run.add_argument("--config", type=Path, required=True, help="edge TOML file")
    edge_run.set_defaults(handler=_edge_run)
    edge_status = edge.add_parser(
        "status", help="outbox depth, last commit and alarms (exit 1 while an alarm is up)"
    )
    edge_status.add_argument("--config", type=Path, required=True, help="edge TOML file")
    edge_status.set_defaults(handler=_edge_status)

    gateway = commands.add_parser("gateway", help="the care platform service").add_subparsers(
        dest="gateway_command", required=True
    )
    gw_run = gateway.add_parser("run", help="ingest, store, alarm, serve the API")
    gw_run.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_run.add_argument("--workers", type=int, default=1, help="ingest workers (default 1)")
    gw_run.set_defaults(handler=_gateway_run)
    gw_migrate = gateway.add_parser(
        "migrate", help="bring the record store's schema to the newest revision"
    )
    gw_migrate.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_migrate.set_defaults(handler=_gateway_migrate)
    for name, handler, help_text in (
        ("export-patient", _gateway_export_patient, "print all data about a patient as JSON"),
        ("erase-patient", _gateway_erase_patient, "erase a patient from both stores"),
    ):
        gdpr = gateway.add_parser(name, help=help_text)
        gdpr.add_argument("--config", type=Path, required=True, help="platform TOML file")
        gdpr.add_argument("--national-id", required=True, help="the patient's 11 digits")
        gdpr.add_argument("--operator", required=True, help="who does this (audit log)")
        if name == "erase-patient":
            gdpr.add_argument("--yes", action="store_true", help="really erase")
        gdpr.set_defaults(handler=handler)
    gw_backup = gateway.add_parser(
        "backup", help="back up the time-series (VictoriaMetrics snapshot), then the record store"
    )
    gw_backup.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_backup.add_argument("--to", type=Path, required=True, help="a new directory")
    gw_backup.set_defaults(handler=_gateway_backup)
    gw_restore = gateway.add_parser(
        "restore", help="replace the record store with a backup (platform stopped; docs/backup.md)"
    )
    gw_restore.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_restore.add_argument("backup", type=Path, help="a directory `gateway backup` made")
    gw_restore.add_argument("--yes", action="store_true", help="really replace")
    gw_restore.add_argument(
        "--timeseries-backed-up-at",
        type=_aware_time,
        default=None,
        help="when the time-series backup began, if not made by `gateway backup` (ISO 8601)",
    )
    gw_restore.set_defaults(handler=_gateway_restore)
    gw_tenant = gateway.add_parser("add-tenant", help="create or rename a tenant (municipality)")
    gw_tenant.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_tenant.add_argument("--id", required=True, help="short id, e.g. 'tromso'")
    gw_tenant.add_argument("--name", required=True)
    gw_tenant.add_argument("--timezone", default="Europe/Oslo")
    gw_tenant.set_defaults(handler=_gateway_add_tenant)
    gw_user = gateway.add_parser(
        "add-user", help="create a user (the password is read from stdin); e.g. the first admin"
    )
    gw_user.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_user.add_argument("--username", required=True)
    gw_user.add_argument("--display-name", default=None)
    gw_user.add_argument("--tenant", default="default")
    gw_user.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["nurse", "coordinator", "admin", "integration"],
        help="repeat for several roles",
    )
    gw_user.add_argument(
        "--team", action="append", default=[], help="care team name (created if missing)"
    )
    gw_user.set_defaults(handler=_gateway_add_user)
    gw_passwd = gateway.add_parser(
        "broker-passwords", help="write the broker's password file (broker_accounts)"
    )
    gw_passwd.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_passwd.set_defaults(handler=_gateway_broker_passwords)
    gw_prov = gateway.add_parser("provision", help="load patients and devices from TOML")
    gw_prov.add_argument("--config", type=Path, required=True, help="platform TOML file")
    gw_prov.add_argument("registry", type=Path, help="registry TOML file")
    gw_prov.set_defaults(handler=_gateway_provision)

    hl7 = commands.add_parser("hl7", help="HL7 v2 tools").add_subparsers(
        dest="hl7_command", required=True
    )
    listen = hl7.add_parser(
        "listen", help="the MLLP endpoint for ADT and ORU^R01, in the foreground"
    )
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, required=True, help="0: any free port")
    listen.add_argument(
        "--database", default=None, help="record store URL (default: the platform's)"
    )
    listen.add_argument("--tenant", default="default", help="tenant of ADT-registered patients")
    listen.add_argument("--tls-cert", type=Path, default=None, help="PEM chain: MLLP over TLS")
    listen.add_argument("--tls-key", type=Path, default=None)
    listen.set_defaults(handler=_hl7_listen)
    gp_peer = hl7.add_parser("gp-peer", help="a GP MLLP endpoint that logs and ACKs")
    gp_peer.add_argument("--host", default="127.0.0.1")
    gp_peer.add_argument("--port", type=int, default=2575)
    gp_peer.add_argument("--log", type=Path, default=None, help="append messages here")
    gp_peer.add_argument("--tls-cert", type=Path, default=None, help="PEM chain: MLLP over TLS")
    gp_peer.add_argument("--tls-key", type=Path, default=None)
    gp_peer.set_defaults(handler=_hl7_gp_peer)
    hl7_oru = hl7.add_parser("oru", help="print an ORU^R01 (IHE PCD-01) for observations")
    hl7_oru.add_argument(
        "--observations", type=Path, required=True, help="JSON of `ble decode --observations`"
    )
    hl7_oru.add_argument("--patient-id", required=True, help="national identity number")
    hl7_oru.add_argument("--patient-name", required=True, help="FAMILY^GIVEN")
    hl7_oru.add_argument("--device-eui64", default=None, help="the device's EUI-64 (or MAC)")
    hl7_oru.set_defaults(handler=_hl7_oru)
    hl7_send = hl7.add_parser(
        "send", help="send one HL7 message over MLLP and print the ACK (exit 1 if negative)"
    )
    hl7_send.add_argument("--host", required=True)
    hl7_send.add_argument("--port", type=int, required=True)
    hl7_send.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    hl7_send.add_argument("file", type=Path, metavar="FILE", help="the message ('-': stdin)")
    hl7_send.set_defaults(handler=_hl7_send)

    fhir = commands.add_parser("fhir", help="HL7 FHIR R4 tools").add_subparsers(
        dest="fhir_command", required=True
    )
    fhir_obs = fhir.add_parser(
        "observations", help="print a FHIR R4 collection Bundle of observations"
    )
    fhir_obs.add_argument(
        "--observations", type=Path, required=True, help="JSON of `ble decode --observations`"
    )
    fhir_obs.add_argument("--patient-id", required=True, help="national identity number")
    fhir_obs.add_argument("--device-eui64", default=None, help="the device's EUI-64 (or MAC)")
    fhir_obs.add_argument("--organisation-number", default=None, help="the performer's org.nr.")
    fhir_obs.add_argument("--organisation-name", default=None, help="the performer's name")
    fhir_obs.set_defaults(handler=_fhir_observations)
    fhir_doc = fhir.add_parser(
        "alarm-document", help="print the VKP document Bundle of a closed alarm"
    )
    fhir_doc.add_argument(
        "--database", default=None, help="record store URL (default: the platform's)"
    )
    fhir_doc.add_argument(
        "--config", type=Path, default=None, help="platform TOML file ([fhir] settings)"
    )
    fhir_doc.add_argument("--alarm", type=int, required=True, help="the alarm's id")
    fhir_doc.set_defaults(handler=_fhir_alarm_document)
    fhir_validate = fhir.add_parser(
        "validate",
        help="validate a resource or Bundle offline (R4 JSON Schema, vital-signs and VKP "
        "rules); exit 1 with one line per problem",
    )
    fhir_validate.add_argument("file", type=Path, metavar="FILE")
    fhir_validate.set_defaults(handler=_fhir_validate)

    patients = commands.add_parser("patients", help="the patient register").add_subparsers(
        dest="patients_command", required=True
    )
    patients_list = patients.add_parser("list", help="patients with identifiers and names")
    patients_list.add_argument("--json", action="store_true", help="as JSON")
    patients_list.add_argument(
        "--database", default=None, help="record store URL (default: the platform's)"
    )
    patients_list.add_argument("--tenant", default="default")
    patients_list.set_defaults(handler=_patients_list)

    ble = commands.add_parser("ble", help="Bluetooth LE tools").add_subparsers(
        dest="ble_command", required=True
    )
    ble_decode = ble.add_parser("decode", help="decode one GATT characteristic value as JSON")
    ble_decode.add_argument("uuid", metavar="UUID", help="16-bit characteristic UUID (2A35)")
    ble_decode.add_argument("hex", metavar="HEX", nargs="+", help="the value's bytes in hex")
    ble_decode.add_argument(
        "--observations", action="store_true", help="print the normalised Observations"
    )
    ble_decode.add_argument("--device-id", default="cli", help="Observation device_id")
    ble_decode.add_argument("--gateway-id", default="cli", help="Observation gateway_id")
    ble_decode.add_argument("--tz", default="Europe/Oslo", help="time zone of the device clock")
    ble_decode.add_argument(
        "--received-at", default=None, help="gateway receive time, ISO 8601 with offset"
    )
    ble_decode.set_defaults(handler=_ble_decode)

    demo = commands.add_parser(
        "demo", help="simulated homes on one machine: their last day replayed, then live"
    )
    demo.add_argument("--homes", type=int, default=8, help="simulated homes (default 8)")
    demo.add_argument(
        "--speed",
        type=float,
        default=1440.0,
        help="how much faster than real time the last day is replayed (default 1440)",
    )
    demo.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log to the terminal (otherwise to demo.log in the work directory)",
    )
    demo.add_argument(
        "--for", dest="for_seconds", type=float, default=None, help="stop after SECONDS"
    )
    demo.add_argument("--port", type=int, default=8080, help="dashboard port (default 8080)")
    demo.add_argument("--workdir", type=Path, default=None, help="keep state here")
    demo.set_defaults(handler=_demo)

    simulate = commands.add_parser(
        "simulate",
        help="simulated homes against a running platform and broker "
        "(admin password: TRYGGHEIM_SIMULATE_PASSWORD or stdin)",
    )
    simulate.add_argument("--homes", type=int, default=5, help="simulated homes (default 5)")
    simulate.add_argument(
        "--platform-url", required=True, help="the platform's API, e.g. https://host:8443"
    )
    simulate.add_argument("--username", required=True, help="an admin user of the platform")
    simulate.add_argument("--broker-host", required=True, help="the central broker")
    simulate.add_argument("--broker-port", type=int, default=8883, help="(default 8883)")
    simulate.add_argument(
        "--tls-ca", type=Path, default=None, help="CA PEM: TLS to the broker (and https API)"
    )
    simulate.add_argument(
        "--speed", type=float, default=1440.0, help="simulated seconds per real second"
    )
    simulate.add_argument(
        "--for", dest="for_seconds", type=float, default=None, help="stop after SECONDS"
    )
    simulate.add_argument("--workdir", type=Path, default=None, help="keep state here")
    simulate.add_argument(
        "--gateway-prefix", default="sim", help="gateway ids PREFIX-0001… (default sim)"
    )
    simulate.set_defaults(handler=_simulate)
    return parser


async def _until_signalled(handler: Handler, args: argparse.Namespace) -> int:
    """Run the command; SIGTERM (systemd stop, docker stop) and SIGINT end it cleanly."""
    task = asyncio.create_task(handler(args), name=args.command)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log.info("stopped by signal")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces each of its plugins at INFO on every start: not news to an operator.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    handler: Handler = args.handler
    try:
        return asyncio.run(_until_signalled(handler, args))
    except TryggheimError as exc:
        print(f"tryggheim: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
