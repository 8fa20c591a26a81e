#!/bin/sh
# Entry point of the platform in the compose stack. Its settings come from platform.toml and
# the environment; the one secret that no person chooses -- InfluxDB's API token, minted by the
# one-shot `influxdb-tokens` -- arrives as a file and is handed over here as
# TRYGGHEIM_GATEWAY_TIMESERIES__TOKEN.
set -eu
if [ -n "${INFLUXDB_TOKEN_FILE:-}" ]; then
    if [ ! -s "$INFLUXDB_TOKEN_FILE" ]; then
        echo "tryggheim: $INFLUXDB_TOKEN_FILE is missing or empty (did influxdb-tokens run?)" >&2
        exit 2
    fi
    TRYGGHEIM_GATEWAY_TIMESERIES__TOKEN=$(cat "$INFLUXDB_TOKEN_FILE")
    export TRYGGHEIM_GATEWAY_TIMESERIES__TOKEN
fi
exec tryggheim "$@"
