#!/usr/bin/env bash
# `make run`: migrate the database, make sure the demo organization exists, then start the
# Procfile's processes (web server, Celery worker with embedded beat) under honcho.
#
# Stopping: Ctrl-C, one SIGTERM to `make run` (make passes it on to this script) or a hang-up
# (closed terminal) stops every process started here. honcho runs each Procfile process in its own
# process group and signals whole groups; this script forwards INT, TERM and HUP to honcho (which
# on its own does not handle HUP, and would leave its groups running) and waits until it is done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export DJANGO_DEBUG=${DJANGO_DEBUG:-true}
export PATH="$PWD/$VENV/bin:$PATH"

python manage.py migrate --noinput
python manage.py demo_setup

# honcho does not handle SIGHUP: it would die of it and leave its process groups running. It
# starts with HUP ignored, and a hang-up reaches it below as a TERM.
trap '' HUP
honcho start -f Procfile &
honcho=$!
stop() { kill -TERM "$honcho" 2>/dev/null || true; }
trap stop INT TERM HUP
# `wait` returns early when a trapped signal arrives; keep waiting until honcho has stopped all.
status=0
while kill -0 "$honcho" 2>/dev/null; do
  wait "$honcho" || status=$?
done
exit "$status"
