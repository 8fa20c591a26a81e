#!/bin/bash
# One-shot after InfluxDB is up (image influxdb, as root): API tokens with only the rights each
# service needs, each written into the volume only that service mounts. The operator token
# (INFLUXDB_ADMIN_TOKEN) stays with InfluxDB and this job.
#
#   platform: read and write the bucket (write: the exporter; delete, for erasure and retention,
#             needs write too)
#   grafana:  read the bucket
#
# A token already in its file is kept while InfluxDB still accepts it; otherwise a new one is
# created. Environment: INFLUX_HOST, INFLUX_TOKEN (the operator token), INFLUX_ORG,
# INFLUX_BUCKET, SSL_CERT_FILE (the stack's CA, so that the CLI verifies InfluxDB's certificate).
set -euo pipefail
: "${INFLUX_HOST:?}" "${INFLUX_TOKEN:?}" "${INFLUX_ORG:?}" "${INFLUX_BUCKET:?}"

bucket_id=$(influx bucket list --org "$INFLUX_ORG" --name "$INFLUX_BUCKET" --hide-headers | cut -f 1)
if [ -z "$bucket_id" ]; then
    echo "mint-tokens: no bucket $INFLUX_BUCKET in $INFLUX_ORG" >&2
    exit 1
fi

# mint NAME FILE OWNER PERMISSION-FLAGS...
mint() {
    local name=$1 file=$2 owner=$3 token
    shift 3
    if [ -s "$file" ] &&
        INFLUX_TOKEN="$(cat "$file")" influx bucket list --org "$INFLUX_ORG" --id "$bucket_id" >/dev/null 2>&1; then
        echo "mint-tokens: $name: token still accepted"
        return
    fi
    token=$(influx auth create --org "$INFLUX_ORG" --description "tryggheim compose: $name" "$@" --json |
        sed -n 's/^[[:space:]]*"token":[[:space:]]*"\([^"]*\)".*/\1/p')
    if [ -z "$token" ]; then
        echo "mint-tokens: $name: InfluxDB returned no token" >&2
        exit 1
    fi
    (umask 077 && printf '%s' "$token" >"$file.tmp")
    chown "$owner" "$file.tmp"
    chmod 0400 "$file.tmp"
    mv -f "$file.tmp" "$file"
    echo "mint-tokens: $name: new token"
}

mint platform /out/platform/token 10001:1883 --read-bucket "$bucket_id" --write-bucket "$bucket_id"
mint grafana /out/grafana/token 472:0 --read-bucket "$bucket_id"
