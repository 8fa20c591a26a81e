#!/bin/sh
# The compose stack's private certificate authority and one TLS certificate per service.
#
# Run by the one-shot `certs` service before anything else starts (as root, without a network):
# the CA's key stays in the `ca` volume, which only this service mounts; each service gets its own
# volume with the CA certificate, its certificate and its key, owned by the user that service
# runs as, so no service can read another's key. Safe to run again: the CA is kept, and a
# certificate is issued again only when it is missing, expires within 30 days, was not signed by
# this CA or names other hosts than it should (e.g. after PUBLIC_HOSTNAME changed).
#
# Environment: PUBLIC_HOSTNAME (name or IP address home gateways, browsers and HL7 peers use,
# default localhost), CA_DIR (/ca), OUT_DIR (/tls), CERT_DAYS (397), CA_DAYS (3650),
# CHOWN (1 when run as root: give each service's files to its user).
set -eu

PUBLIC_HOSTNAME=${PUBLIC_HOSTNAME:-localhost}
CA_DIR=${CA_DIR:-/ca}
OUT_DIR=${OUT_DIR:-/tls}
CERT_DAYS=${CERT_DAYS:-397}
CA_DAYS=${CA_DAYS:-3650}
if [ "$(id -u)" = 0 ]; then CHOWN=${CHOWN:-1}; else CHOWN=${CHOWN:-0}; fi
RENEW_BEFORE_S=2592000 # 30 days

# service  owner (uid:gid the service runs as)  host names (comma separated; "public" = PUBLIC_HOSTNAME)
SERVICES='
mosquitto   1883:1883    mosquitto,localhost,public
postgres    999:999      postgres,localhost
influxdb    1000:1000    influxdb,localhost
platform    10001:1883   platform,localhost,public
proxy       0:0          proxy,localhost,public
grafana     472:0        grafana,localhost,public
prometheus  65534:65534  prometheus,localhost
gp-peer     10001:10001  gp-peer,localhost
'

log() { echo "make-certs: $*"; }

san_of() { # host list -> subjectAltName value, sorted and without duplicates
    echo "$1" | tr ',' '\n' | sed "s/^public\$/$PUBLIC_HOSTNAME/" | sort -u | while read -r host; do
        case "$host" in
            *:*) printf 'IP:%s\n' "$host" ;;          # IPv6
            *[!0-9.]*) printf 'DNS:%s\n' "$host" ;;
            *) printf 'IP:%s\n' "$host" ;;            # IPv4
        esac
    done | paste -sd, -
}

umask 077
mkdir -p "$CA_DIR" "$OUT_DIR"

if [ ! -s "$CA_DIR/ca.key" ] || [ ! -s "$CA_DIR/ca.pem" ]; then
    log "new certificate authority"
    openssl ecparam -name prime256v1 -genkey -noout -out "$CA_DIR/ca.key"
    openssl req -new -x509 -sha256 -days "$CA_DAYS" -key "$CA_DIR/ca.key" -out "$CA_DIR/ca.pem" \
        -subj "/O=Tryggheim/CN=Tryggheim compose CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
fi
chmod 0400 "$CA_DIR/ca.key"
chmod 0444 "$CA_DIR/ca.pem"

# The CA certificate alone, for the jobs and clients that only verify (and to hand to home
# gateways and HL7 peers: `docker compose run --rm --no-deps --entrypoint cat certs /tls/ca/ca.pem`).
mkdir -p "$OUT_DIR/ca"
cp "$CA_DIR/ca.pem" "$OUT_DIR/ca/ca.pem.tmp" && mv -f "$OUT_DIR/ca/ca.pem.tmp" "$OUT_DIR/ca/ca.pem"
chmod 0755 "$OUT_DIR/ca"
chmod 0444 "$OUT_DIR/ca/ca.pem"

issue() { # service owner hosts
    name=$1 owner=$2 san=$(san_of "$3")
    dir="$OUT_DIR/$name"
    mkdir -p "$dir"
    if [ -s "$dir/server.pem" ] && [ -s "$dir/server.key" ] &&
        [ "$(cat "$dir/san" 2>/dev/null)" = "$san" ] &&
        cmp -s "$CA_DIR/ca.pem" "$dir/ca.pem" &&
        openssl verify -CAfile "$CA_DIR/ca.pem" "$dir/server.pem" >/dev/null 2>&1 &&
        openssl x509 -checkend "$RENEW_BEFORE_S" -noout -in "$dir/server.pem" >/dev/null; then
        log "$name: certificate still good"
    else
        log "$name: new certificate for $san"
        work=$(mktemp -d)
        openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key"
        openssl req -new -sha256 -key "$work/server.key" -out "$work/server.csr" \
            -subj "/O=Tryggheim/CN=$name"
        cat >"$work/ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
        openssl x509 -req -sha256 -days "$CERT_DAYS" -in "$work/server.csr" \
            -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" -CAcreateserial \
            -CAserial "$CA_DIR/ca.srl" -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null
        cp "$CA_DIR/ca.pem" "$work/ca.pem"
        printf '%s\n' "$san" >"$work/san"
        rm -f "$dir/server.key" # read-only from an earlier run
        for file in ca.pem server.pem server.key san; do mv -f "$work/$file" "$dir/$file"; done
        rm -rf "$work"
    fi
    chmod 0444 "$dir/ca.pem" "$dir/server.pem" "$dir/san"
    chmod 0400 "$dir/server.key"
    chmod 0750 "$dir"
    if [ "$CHOWN" = 1 ]; then chown -R "$owner" "$dir"; fi
}

echo "$SERVICES" | while read -r name owner hosts; do
    [ -n "$name" ] || continue
    issue "$name" "$owner" "$hosts"
done

log "CA $(openssl x509 -noout -fingerprint -sha256 -in "$CA_DIR/ca.pem")"
