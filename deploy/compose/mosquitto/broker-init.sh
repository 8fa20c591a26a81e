#!/bin/sh
# One-shot before the broker starts (image eclipse-mosquitto, as root, without a network): the
# broker's static users -- the platform's ingest user and the health check -- as a Mosquitto
# password file, and the ACL, in the `broker-accounts` volume. The platform appends every
# provisioned home gateway to the static users and writes the result as `passwd`
# ([broker_accounts] in platform.toml; the one-shot `broker-passwords` does it at every start);
# Mosquitto reads `passwd` and `acl` from there. Runs at every `docker compose up`, so changed
# passwords in .env take effect then.
#
# Environment: MQTT_PLATFORM_PASSWORD, MQTT_HEALTHCHECK_PASSWORD; BROKER_DIR (/broker),
# ACL_SOURCE (/etc/tryggheim/acl), BROKER_OWNER (10001:1883: the platform writes the
# directory, Mosquitto's group reads it).
set -eu
: "${MQTT_PLATFORM_PASSWORD:?set MQTT_PLATFORM_PASSWORD}"
: "${MQTT_HEALTHCHECK_PASSWORD:?set MQTT_HEALTHCHECK_PASSWORD}"
dir=${BROKER_DIR:-/broker}
acl=${ACL_SOURCE:-/etc/tryggheim/acl}
owner=${BROKER_OWNER:-10001:1883}

umask 027
mkdir -p "$dir"
users="$dir/.static-users.tmp"
rm -f "$users"
# "_healthcheck" can never be a home gateway's name (those start with a letter or digit); the
# ACL's patterns let it read only tryggheim/v1/_healthcheck/down/#, which nobody publishes to.
mosquitto_passwd -c -b "$users" platform "$MQTT_PLATFORM_PASSWORD"
mosquitto_passwd -b "$users" _healthcheck "$MQTT_HEALTHCHECK_PASSWORD"
cp "$acl" "$dir/.acl.tmp"
chmod 0640 "$users" "$dir/.acl.tmp"
if [ "$(id -u)" = 0 ]; then
    chown "$owner" "$dir" "$users" "$dir/.acl.tmp"
    chmod 2770 "$dir"
fi
mv -f "$users" "$dir/static-users"
mv -f "$dir/.acl.tmp" "$dir/acl"
echo "broker-init: static users and ACL written to $dir"
