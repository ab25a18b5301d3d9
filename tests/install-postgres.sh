#!/usr/bin/env bash
# The DuckLake tests (tests/postgres.py) run a throwaway PostgreSQL server: initdb and pg_ctl
# from Debian's postgresql package, installed with apt when missing. .ci/run calls this; CI runs
# as root, and tests/postgres.py then runs the server as the package's `postgres` user.
set -euo pipefail
if command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql >/dev/null
ls /usr/lib/postgresql/*/bin/initdb
