#!/usr/bin/env bash
# Install the Tryggheim home gateway agent on Raspberry Pi OS (Debian) as a systemd service:
#
#   sudo bash deploy/pi/install.sh [PACKAGE]
#
# PACKAGE is what pip installs (default: this checkout). The agent runs as the system user
# "tryggheim" (member of "bluetooth", nothing more), its config is /etc/tryggheim/edge.toml
# (created from the example on first install, never overwritten), its outbox lives in
# /var/lib/tryggheim. Safe to run again to upgrade.
#
# TRYGGHEIM_INSTALL_ROOT=/some/dir stages the files under that directory instead of / and does
# not create users or touch systemd (used by the tests, and to build images).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
package="${1:-$repo}"
root="${TRYGGHEIM_INSTALL_ROOT:-}"
staged=${root:+yes}

if [[ -z "$staged" && $EUID -ne 0 ]]; then
    echo "install.sh: run as root (sudo)" >&2
    exit 1
fi

if [[ -z "$staged" ]]; then
    apt-get update
    apt-get install -y python3 python3-venv bluez
    getent group bluetooth >/dev/null || groupadd --system bluetooth
    if ! id tryggheim >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/tryggheim --no-create-home \
            --shell /usr/sbin/nologin --groups bluetooth tryggheim
    fi
fi

install -d -m 0755 "$root/opt/tryggheim"
python3 -m venv "$root/opt/tryggheim/venv"
"$root/opt/tryggheim/venv/bin/pip" install --quiet --upgrade "$package"

install -d -m 0750 "$root/etc/tryggheim"
if [[ ! -e "$root/etc/tryggheim/edge.toml" ]]; then
    install -m 0640 "$repo/examples/edge.toml" "$root/etc/tryggheim/edge.toml"
    sed -i 's|^outbox_path = .*|outbox_path = "/var/lib/tryggheim/outbox.db"|' \
        "$root/etc/tryggheim/edge.toml"
fi
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 "$here/tryggheim-edge.service" "$root/etc/systemd/system/tryggheim-edge.service"

if [[ -z "$staged" ]]; then
    chgrp -R tryggheim /etc/tryggheim
    systemctl daemon-reload
    systemctl enable tryggheim-edge.service
    echo "Installed. Edit /etc/tryggheim/edge.toml (gateway_id, uplink, devices), then:"
    echo "  systemctl restart tryggheim-edge && journalctl -fu tryggheim-edge"
fi
