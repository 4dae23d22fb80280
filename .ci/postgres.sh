#!/usr/bin/env bash
# Start a throwaway PostgreSQL (Debian's packages) on 127.0.0.1 for the tests, and print the
# address to give them in CARBON_JUPYTER_TEST_POSTGRES. Installs PostgreSQL when it is missing.
# Usage: .ci/postgres.sh [PORT]   (default 55432; data under /tmp/carbon-jupyter-pg-PORT)
set -euo pipefail
port=${1:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ]; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
data=/tmp/carbon-jupyter-pg-$port
run_as=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$data" postgres
    run_as=(runuser -u postgres --)
fi
if ! "${run_as[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    rm -rf "$data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-h 127.0.0.1 -p $port -k $data -c max_connections=200 -c fsync=off" start >&2
fi
echo "postgresql://postgres@127.0.0.1:$port/postgres"
