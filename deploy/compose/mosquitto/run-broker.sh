#!/bin/sh
# Mosquitto for the compose stack, reloaded whenever its password file changes: the platform
# rewrites the file (atomically, a new inode) each time a home gateway is provisioned or removed,
# and Mosquitto reads it again only on SIGHUP. Same as `docker compose kill -s HUP mosquitto`,
# without anyone having to remember it.
#
# Environment: MOSQUITTO_CONF (/etc/tryggheim/mosquitto.conf), PASSWD_FILE
# (/mosquitto/config/passwd), PASSWD_POLL_S (5).
set -eu
conf=${MOSQUITTO_CONF:-/etc/tryggheim/mosquitto.conf}
passwd=${PASSWD_FILE:-/mosquitto/config/passwd}
poll=${PASSWD_POLL_S:-5}

version() { stat -c '%i:%Y:%s' "$passwd" 2>/dev/null || echo missing; }

seen=$(version)
mosquitto -c "$conf" &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null || true' TERM INT
while kill -0 "$broker" 2>/dev/null; do
    sleep "$poll" &
    wait $! || true
    now=$(version)
    if [ "$now" != "$seen" ]; then
        seen=$now
        echo "run-broker: $passwd changed, reloading"
        kill -HUP "$broker" 2>/dev/null || true
    fi
done
set +e
wait "$broker"
status=$?
exit "$status"
