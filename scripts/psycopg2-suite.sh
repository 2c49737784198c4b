#!/usr/bin/env bash
# psycopg2's own test suite, run directly against PostgreSQL and then through Vigil: Vigil is
# transparent to the driver if both runs fail the *same set* of tests (a few fail even directly).
#
# Self-contained: builds `vigil` (unless VIGIL_BIN is set), makes a throwaway PostgreSQL 15
# cluster with SCRAM-SHA-256 auth and a Vigil config in a scratch folder, issues a token, runs
# the suite twice, compares, and removes everything it started on exit.
#
# The venv and the psycopg2 source are cached in $VIGIL_PSYCOPG2_CACHE (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/vigil-psycopg2): after the first run no network is needed.
#
# Environment:
#   VIGIL_BIN                 vigil binary to test (default: cargo build --release -p vigil)
#   PSYCOPG2_VERSION          psycopg2 release whose suite is run (default 2.9.13)
#   VIGIL_PSYCOPG2_CACHE      cache folder (venv + source)
#   PG_BIN                    PostgreSQL 15 server binaries (default /usr/lib/postgresql/15/bin)
#   VIGIL_PSYCOPG2_KEEP=1     keep the scratch folder (logs, results) after the run
#                             (VIGIL_SUITE_KEEP=1 too)
#   VIGIL_PSYCOPG2_ONLY=...   run only these tests (unittest names, space-separated), for debugging
#
# Exit status: 0 when the suite ran (> MIN_TESTS tests) and the failure sets are equal.
set -euo pipefail

SUITE=psycopg2
VIGIL_SUITE_KEEP=${VIGIL_PSYCOPG2_KEEP:-${VIGIL_SUITE_KEEP:-0}}
# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
PSYCOPG2_VERSION=${PSYCOPG2_VERSION:-2.9.13}
CACHE=${VIGIL_PSYCOPG2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-psycopg2}
MIN_TESTS=700
# A test taking longer than this is hung: dump Python's stacks and stop that run.
PER_TEST_TIMEOUT=${VIGIL_PSYCOPG2_TEST_TIMEOUT:-120}
DB=psycopg2_test
IDENTITY=psycopg2

started_at=$SECONDS
suite_vigil_bin

# --- cached venv and source ---------------------------------------------------------------
venv="$CACHE/venv-$PSYCOPG2_VERSION"
src="$CACHE/psycopg2-$PSYCOPG2_VERSION"
mkdir -p "$CACHE"
if [[ ! -f "$venv/.ready" ]]; then
  log "creating venv with psycopg2-binary==$PSYCOPG2_VERSION in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "psycopg2-binary==$PSYCOPG2_VERSION"
  touch "$venv/.ready"
fi
if [[ ! -f "$src/.ready" ]]; then
  log "downloading the psycopg2 $PSYCOPG2_VERSION source (for its tests)"
  rm -rf "$src" "$CACHE/sdist"
  # pip prepares the archive's metadata, for which psycopg2's setup.py wants pg_config.
  PATH="$PG_BIN:$PATH" "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: -d "$CACHE/sdist" "psycopg2==$PSYCOPG2_VERSION"
  tar xzf "$CACHE/sdist/psycopg2-$PSYCOPG2_VERSION.tar.gz" -C "$CACHE"
  [[ -f "$src/tests/__init__.py" ]] || die "the psycopg2 source archive has no tests/"
  touch "$src/.ready"
fi

suite_scratch
# max_prepared_transactions > 0 so that the two-phase-commit tests run instead of skipping.
suite_start_pg "-c max_connections=100 -c max_prepared_transactions=10"
# The suite runs as the role psycopg2 on both paths: directly, and as Vigil's upstream login.
# Named like the Vigil identity, so that the user the driver believes it is (PQuser: the
# identity, through Vigil) is also current_user, as the suite's test_user expects. A superuser,
# as the suite needs for some tests; the database is its own.
printf "CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n" \
  "$IDENTITY" "$upstream_password" "$DB" "$IDENTITY" | psql_direct -d postgres -f - >/dev/null
# hstore so that its tests run too (skipped if the contrib module is not installed).
psql_direct -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS hstore" >/dev/null 2>&1 ||
  log "hstore not available: its tests will be skipped"

# --- Vigil ----------------------------------------------------------------------------------
# The suite exercises everything a driver can do: a grant that allows it all, dangerous
# functions included (large objects go through lo_* and FunctionCall messages), and the one
# catalog side channel it reads (tpc_recover() lists pg_prepared_xacts, which shows other
# sessions' prepared transactions, so it must be named).
suite_start_vigil "$(cat <<EOF
[[connections]]
name = "$DB"
protocol = "postgres"
host = "127.0.0.1"
port = $pg_port
database = "$DB"
user = "$IDENTITY"
password = "env:VIGIL_SUITE_UPSTREAM_PASSWORD"
tls = "disable"

[[identities]]
name = "$IDENTITY"
kind = "machine"
connections = ["$DB"]

[[policies]]
name = "psycopg2-suite"
identities = ["$IDENTITY"]
connections = ["$DB"]
[policies.scope]
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
relations = ["*", "pg_catalog.pg_prepared_xacts"]
functions = ["*", "pg_notify", "set_config", "pg_terminate_backend", "pg_cancel_backend", "lo_import", "lo_export", "lo_get", "lo_put", "lo_create", "lo_creat", "lo_unlink", "lo_open", "lo_close", "loread", "lowrite", "lo_from_bytea", "lo_truncate", "lo_truncate64", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64"]
allow = ["do", "create_function", "set_role", "set_session_authorization", "set_search_path", "function_call", "copy_file", "create_extension"]
EOF
)" "$IDENTITY"

# --- the suite --------------------------------------------------------------------------------
cat >"$scratch/run_suite.py" <<'EOF'
"""Runs psycopg2's test suite; writes the result as JSON (argv[1]); log on stdout."""
import faulthandler
import json
import os
import sys
import unittest

out_path, per_test_timeout = sys.argv[1], int(sys.argv[2])
only = os.environ.get("VIGIL_PSYCOPG2_ONLY", "").split()
secrets = [s for s in (os.environ.get("PSYCOPG2_TESTDB_PASSWORD"),) if s]


def redact(text):
    for s in secrets:
        text = text.replace(s, "***")
    return text


class Result(unittest.TextTestResult):
    def startTest(self, test):
        # A hung test (a proxy that loses a message) dumps every thread's stack and ends the run.
        faulthandler.dump_traceback_later(per_test_timeout, exit=True)
        super().startTest(test)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)


sys.path.insert(0, os.getcwd())
import tests  # noqa: E402  (the suite's package, from the source folder)

suite = unittest.defaultTestLoader.loadTestsFromNames(only) if only else tests.test_suite()
result = unittest.TextTestRunner(
    stream=sys.stdout, verbosity=2, resultclass=Result
).run(suite)
bad = {}
for kind, items in (("FAIL", result.failures), ("ERROR", result.errors),
                    ("UNEXPECTED SUCCESS", [(t, "") for t in result.unexpectedSuccesses])):
    for test, trace in items:
        bad[test.id()] = f"{kind}: {redact(trace)}"
with open(out_path, "w") as f:
    json.dump({"run": result.testsRun, "skipped": len(result.skipped), "bad": bad}, f)
EOF

run_suite() { # name port user password
  local name=$1 t0=$SECONDS rc=0
  log "running the suite $name"
  (
    cd "$src"
    env -u PGHOST -u PGPORT -u PGUSER -u PGPASSWORD -u PGDATABASE -u PGSERVICE -u PGOPTIONS \
      PSYCOPG2_TESTDB="$DB" PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT="$2" \
      PSYCOPG2_TESTDB_USER="$3" PSYCOPG2_TESTDB_PASSWORD="$4" \
      timeout 1200 "$venv/bin/python" "$scratch/run_suite.py" "$scratch/$name.json" \
      "$PER_TEST_TIMEOUT"
  ) >"$scratch/$name.log" 2>&1 || rc=$?
  if [[ ! -f "$scratch/$name.json" ]]; then
    local tail_text
    tail_text=$(tail -n 60 "$scratch/$name.log")
    printf '%s\n' "${tail_text//"$4"/***}" >&2
    die "the suite $name did not finish (exit $rc)"
  fi
  log "  $name: done in $((SECONDS - t0)) s"
}

run_suite direct "$pg_port" "$IDENTITY" "$upstream_password"
run_suite through-vigil "$vigil_port" "$IDENTITY" "$token"
unset token upstream_password VIGIL_SUITE_UPSTREAM_PASSWORD

# --- compare ------------------------------------------------------------------------------------
set +e
min_tests=$MIN_TESTS
[[ -z "${VIGIL_PSYCOPG2_ONLY:-}" ]] || min_tests=0
suite_compare "$scratch/direct.json" "$scratch/through-vigil.json" "$min_tests"
status=$?
set -e
log "total time $((SECONDS - started_at)) s"
if [[ $status -ne 0 ]]; then
  log "vigil log (last lines):"
  tail -n 20 "$scratch/vigil/vigil.log" >&2 || true
fi
exit "$status"
