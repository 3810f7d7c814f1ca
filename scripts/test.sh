#!/usr/bin/env bash
# Run the test suite on the real services this machine has:
# - PostgreSQL: $DATABASE_URL, else 127.0.0.1:5432, else a throwaway cluster under var/ made with
#   the installed PostgreSQL binaries; only where none exists, SQLite with a loud warning.
# - Redis: $REDIS_URL, else 127.0.0.1:6379 when reachable.
# - Chromium (Debian's) for the browser tests: installed with apt-get when missing and possible.
# With CI=true, PostgreSQL and Redis are required.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ci=${CI:-false}

port_open() { "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
PYEOF
}

warn() { printf '\n\033[1;33m%s\033[0m\n\n' "$*" >&2; }

# --- PostgreSQL ----------------------------------------------------------------------------------
if [ -z "${DATABASE_URL:-}" ]; then
  if port_open 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/portal"
  else
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ]; then
      pgdata="$PWD/var/pgtest"
      run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
      if [ ! -f "$pgdata/PG_VERSION" ]; then
        mkdir -p "$pgdata"; [ "$(id -u)" = 0 ] && chown postgres "$pgdata"
        run_pg "$pgbin/initdb" -D "$pgdata" -U postgres --auth trust >/dev/null
      fi
      if ! port_open 127.0.0.1 54329; then
        run_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/log" -w \
          -o "-p 54329 -c listen_addresses=127.0.0.1 -k $pgdata -c fsync=off" start >/dev/null
      fi
      export DATABASE_URL="postgres://postgres@127.0.0.1:54329/portal"
    elif [ "$ci" = true ]; then
      echo "error: CI=true needs PostgreSQL (127.0.0.1:5432 or DATABASE_URL); none found." >&2
      exit 1
    else
      warn "WARNING: no PostgreSQL found (no server on 127.0.0.1:5432, no initdb binaries).
         The tests run on SQLite and do NOT prove PostgreSQL behaviour."
    fi
  fi
fi
echo "tests: database ${DATABASE_URL:-sqlite (fallback)}"

# --- Redis -------------------------------------------------------------------------------------
if [ -z "${REDIS_URL:-}" ]; then
  if port_open 127.0.0.1 6379; then
    export REDIS_URL="redis://127.0.0.1:6379/15"
  elif [ "$ci" = true ]; then
    echo "error: CI=true needs Redis on 127.0.0.1:6379 (or REDIS_URL); none found." >&2
    exit 1
  else
    warn "WARNING: no Redis on 127.0.0.1:6379: the cache falls back to files under var/."
  fi
fi
echo "tests: redis ${REDIS_URL:-none}"

# --- Chromium for the browser tests -------------------------------------------------------------
if [ -z "${PORTAL_BROWSER:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests: installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || true
  fi
  PORTAL_BROWSER=$(command -v chromium || true)
  export PORTAL_BROWSER
fi
echo "tests: browser ${PORTAL_BROWSER:-none (browser tests will fail)}"

export DJANGO_DEBUG=true
# The fault-injection suite (tests/faults) runs on its own: `make test-faults`.
exec "$PY" -m pytest --ignore=tests/faults "$@"
