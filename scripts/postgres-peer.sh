#!/usr/bin/env bash
# Installs (if missing) and starts Debian's PostgreSQL 15, the peer of the
# postgres storage driver's integration tests, and makes the role the tests
# use. Idempotent: run it as often as you like. The server refuses to run as
# root, so it runs as the postgres user (pg_ctlcluster does that).
#
# Tests connect with WARDEN_TEST_POSTGRES (default below); each test makes
# and drops its own database (internal/storage/postgres/pgtest).
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /usr/lib/postgresql/15 ]; then
  echo "installing: postgresql (15)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql-15
fi
if ! pg_lsclusters -h 2>/dev/null | awk '$1 == 15 && $2 == "main"' | grep -q .; then
  pg_createcluster 15 main
fi
if ! pg_lsclusters -h | awk '$1 == 15 && $2 == "main" {print $4}' | grep -q online; then
  pg_ctlcluster 15 main start
fi
for _ in $(seq 1 100); do
  runuser -u postgres -- pg_isready -q -h /var/run/postgresql -p 5432 && break
  sleep 0.1
done
runuser -u postgres -- pg_isready -h /var/run/postgresql -p 5432
# The test role: it may create (and drop) databases, nothing more.
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'warden_test') THEN
    CREATE ROLE warden_test LOGIN CREATEDB PASSWORD 'warden_test';
  END IF;
END $$;
SQL
