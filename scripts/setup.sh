#!/usr/bin/env bash
# Prepare this machine for the tests and the demo; safe to run again (it only does what is missing):
# Debian packages of the real servers the tests start, then .venv with the project installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The servers the tests and the demo start. mosquitto-clients: mosquitto_sub, the compose
# broker's health check. nginx and openssl: the compose tests run the stack's proxy config and
# certificate script. git and systemd: the compose and Pi-install tests ask them. python3-venv:
# Debian's python3 makes .venv only with it. tests/programs.py lists every program the code and
# the tests start, and tests/test_setup.py checks that one of these packages provides each.
PACKAGES=(mosquitto mosquitto-clients postgresql victoria-metrics chromium nginx openssl git
    systemd python3 python3-venv prometheus)
# Node.js runs the independent HL7 peer in the tests and the Node-RED bench. A machine that
# already has a node (e.g. from NodeSource) keeps it; otherwise Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        sudo=(sudo)
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    # The tests and the demo start their own servers on free ports; the packages' system
    # services (1883, 5432, 8428) are not needed. policy-rc.d answering 101 tells the package
    # scripts not to start them, on machines with or without systemd. An existing policy is
    # left alone, and ours is removed again however this script ends.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
        "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
    python=""
    for candidate in python3.13 python3.12 python3.11 python3; do
        # (pyenv's shims exist for versions that are not installed: quiet their complaint)
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
    if [[ -z "$python" ]]; then
        echo "setup: Python 3.11 or newer is needed (python3 is $(python3 --version 2>&1))" >&2
        exit 1
    fi
    echo "setup: creating .venv with $python"
    "$python" -m venv .venv
fi

# pip install is the slow part of a repeated `make test`: redo it only when the project's
# dependencies (pyproject.toml) changed since the last successful install.
stamp=.venv/.tryggheim-installed
if [[ ! -e "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    echo "setup: installing the project and its test dependencies into .venv"
    .venv/bin/python -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi
