#!/bin/bash
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d): the platform's own role and database. The role owns its
# database and nothing else -- no superuser, no CREATEDB, no CREATEROLE -- so the platform cannot
# touch other databases or roles; the superuser (POSTGRES_PASSWORD) is for operators only.
# To change TRYGGHEIM_DB_PASSWORD later: ALTER ROLE tryggheim PASSWORD '…' (as postgres), then
# update .env.
set -euo pipefail
: "${TRYGGHEIM_DB_PASSWORD:?set TRYGGHEIM_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    --set app_password="$TRYGGHEIM_DB_PASSWORD" <<'SQL'
CREATE ROLE tryggheim LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE DATABASE tryggheim OWNER tryggheim ENCODING 'UTF8';
REVOKE ALL ON DATABASE tryggheim FROM PUBLIC;
SQL
echo "10-app-role: role and database tryggheim created"
