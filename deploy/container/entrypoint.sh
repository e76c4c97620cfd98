#!/bin/sh
# Kami's container entry point (deploy/container/Dockerfile). One image, three uses:
#
#   entrypoint.sh web            wait for the database, `kami migrate` (unless KAMI_MIGRATE=0),
#                                then `kami serve --no-worker` on $KAMI_HOST:$KAMI_PORT (0.0.0.0:8000)
#   entrypoint.sh worker         wait for the database and its migrations, then `kami worker`
#   entrypoint.sh kami ARGS...   any kami command (kami doctor, kami backup FILE, kami staff setup-link)
#
# Extra arguments go to the kami command (entrypoint.sh web --threads 16). Everything else comes
# from the environment, as outside a container: DATABASE_URL, KAMI_DATA_DIR, KAMI_* (kami.env).
# KAMI_DATABASE_WAIT_SECONDS (60) bounds the wait for a database that is still starting.
# Only the web migrates: run one web container while upgrading (or KAMI_MIGRATE=0 on the others);
# a worker waits until the migrations are applied. tests/ops/test_container_entrypoint.py runs
# this script outside a container.
set -eu

usage="usage: entrypoint.sh web|worker|kami [ARGS...]"

wait_for_database() {  # $1: "migrated" to wait for the migrations too
    python - "${1:-}" <<'PY'
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kami.settings")
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

want_migrated = sys.argv[1] == "migrated"
limit = float(os.environ.get("KAMI_DATABASE_WAIT_SECONDS", "60"))
where = f"{connection.vendor} database {connection.settings_dict.get('NAME')!s}"
deadline, said, problem = time.monotonic() + limit, False, ""
while True:
    try:
        connection.ensure_connection()
        if not want_migrated:
            break
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if not pending:
            break
        problem = f"{len(pending)} migration(s) not applied yet (the web container applies them)"
    except Exception as exc:  # the driver's own error: whatever it is, say its first line
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        connection.close()
    if time.monotonic() >= deadline:
        sys.exit(f"entrypoint: gave up after {limit:g}s (KAMI_DATABASE_WAIT_SECONDS) waiting for the {where}: "
                 f"{problem}; check DATABASE_URL and that the database server runs")
    if not said:
        print(f"entrypoint: waiting for the {where}: {problem}", file=sys.stderr, flush=True)
        said = True
    time.sleep(1)
PY
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    web)
        wait_for_database
        if [ "${KAMI_MIGRATE:-1}" != "0" ]; then
            kami migrate --no-input
        fi
        exec kami serve --no-worker "$@"
        ;;
    worker)
        wait_for_database migrated
        exec kami worker "$@"
        ;;
    kami)
        exec kami "$@"
        ;;
    *)
        echo "entrypoint.sh: unknown command '${command}': $usage" >&2
        exit 2
        ;;
esac
