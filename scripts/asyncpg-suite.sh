#!/usr/bin/env bash
# asyncpg's own test suite (binary protocol, pipelining, COPY, cancel, LISTEN), run directly
# against PostgreSQL and then through Vigil: Vigil is transparent to the driver if both runs fail
# the *same set* of tests (a few fail even directly).
#
# Self-contained: builds `vigil` (unless VIGIL_BIN is set), makes a throwaway PostgreSQL 15
# cluster with SCRAM-SHA-256 auth and a Vigil config in a scratch folder, issues a token, runs
# the suite twice (a fresh cluster state each time), compares, and removes everything it
# started on exit. With PGHOST set the suite treats the server as unmanaged and skips the
# tests that start clusters of their own.
#
# The venv and the asyncpg source are cached in $VIGIL_ASYNCPG_CACHE (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/vigil-asyncpg): after the first run no network is needed.
#
# Environment:
#   VIGIL_BIN                 vigil binary to test (default: cargo build --release -p vigil)
#   ASYNCPG_VERSION           asyncpg release whose suite is run (default 0.32.0)
#   VIGIL_ASYNCPG_CACHE       cache folder (venv + source)
#   PG_BIN                    PostgreSQL 15 server binaries (default /usr/lib/postgresql/15/bin)
#   VIGIL_SUITE_KEEP=1        keep the scratch folder (logs, results) after the run
#   VIGIL_ASYNCPG_ONLY=...    run only these tests (pytest node ids or -k expression), for debugging
#   VIGIL_ASYNCPG_RUNS=N      run the suite through Vigil N times (memory, intermittent failures)
#
# Exit status: 0 when the suite ran (> MIN_TESTS tests) and the failure sets are equal.
set -euo pipefail

SUITE=asyncpg
# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
ASYNCPG_VERSION=${ASYNCPG_VERSION:-0.32.0}
CACHE=${VIGIL_ASYNCPG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-asyncpg}
MIN_TESTS=250
RUNS=${VIGIL_ASYNCPG_RUNS:-1}
IDENTITY=asyncpg
# The suite's main database, and those some of its tests create and connect to.
DATABASES=(postgres testdb asyncpg_intro_test)

started_at=$SECONDS
suite_vigil_bin

# --- cached venv and source ---------------------------------------------------------------
venv="$CACHE/venv-$ASYNCPG_VERSION"
src="$CACHE/asyncpg-$ASYNCPG_VERSION"
mkdir -p "$CACHE"
if [[ ! -f "$venv/.ready" ]]; then
  log "creating venv with asyncpg==$ASYNCPG_VERSION in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "asyncpg==$ASYNCPG_VERSION" \
    pytest pytest-timeout uvloop distro
  touch "$venv/.ready"
fi
if [[ ! -f "$src/.ready" ]]; then
  log "downloading the asyncpg $ASYNCPG_VERSION source (for its tests)"
  rm -rf "$src" "$CACHE/sdist"
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$CACHE/sdist" "asyncpg==$ASYNCPG_VERSION"
  tar xzf "$CACHE/sdist/asyncpg-$ASYNCPG_VERSION.tar.gz" -C "$CACHE"
  [[ -d "$src/tests" ]] || die "the asyncpg source archive has no tests/"
  # Import the installed, compiled package, not the source tree.
  rm -rf "$src/asyncpg"
  touch "$src/.ready"
fi

suite_scratch
suite_start_pg "-c max_connections=200 -c max_prepared_transactions=10"
# The suite runs as the role asyncpg on both paths: directly, and as Vigil's upstream login
# (named like the Vigil identity, so current_user is what the driver believes it is). A
# superuser, as the suite needs.
printf "CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s';\n" "$IDENTITY" "$upstream_password" |
  psql_direct -d postgres -f - >/dev/null
# What each run starts from: the cluster's databases as initdb made them.
reset_cluster() {
  psql_direct -d postgres -At -c "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'" |
    while read -r db; do psql_direct -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
  psql_direct -d postgres -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public" >/dev/null
  psql_direct -d postgres -At -c "SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\_%' AND rolname NOT IN ('postgres', '$IDENTITY')" |
    while read -r role; do psql_direct -d postgres -c "DROP ROLE IF EXISTS \"$role\"" >/dev/null; done
}

connections=""
for db in "${DATABASES[@]}"; do
  connections+=$(printf '\n[[connections]]\nname = "%s"\nprotocol = "postgres"\nhost = "127.0.0.1"\nport = %s\ndatabase = "%s"\nuser = "%s"\npassword = "env:VIGIL_SUITE_UPSTREAM_PASSWORD"\ntls = "disable"\n' \
    "$db" "$pg_port" "$db" "$IDENTITY")
done
list=$(printf '"%s", ' "${DATABASES[@]}")
list="[${list%, }]"
# Everything a driver can do, the catalog side channels the suite reads named.
suite_start_vigil "$(cat <<EOF
$connections

[[identities]]
name = "$IDENTITY"
kind = "machine"
connections = $list

[[policies]]
name = "asyncpg-suite"
identities = ["$IDENTITY"]
connections = $list
[policies.scope]
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
relations = ["*", "pg_catalog.pg_stat_activity", "pg_catalog.pg_prepared_xacts", "pg_catalog.pg_locks"]
functions = ["*", "pg_notify", "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_stat_get_activity", "pg_backend_pid", "pg_sleep", "pg_advisory_lock", "pg_reload_conf"]
allow = ["do", "create_function", "set_role", "set_session_authorization", "set_search_path", "function_call", "copy_file", "create_extension", "set_protected_setting"]
EOF
)" "$IDENTITY"

cat >"$scratch/junit_to_json.py" <<'EOF'
"""pytest's JUnit XML (argv[1]) as {"run", "skipped", "bad"} (argv[2]); secrets redacted."""
import json, os, sys
import xml.etree.ElementTree as ET

secrets = [s for s in (os.environ.get("PGPASSWORD"),) if s]
root = ET.parse(sys.argv[1]).getroot()
run = skipped = 0
bad = {}
for case in root.iter("testcase"):
    run += 1
    name = f"{case.get('classname')}.{case.get('name')}"
    for kind in ("failure", "error"):
        el = case.find(kind)
        if el is not None:
            text = (el.get("message") or "") + "\n" + (el.text or "")
            for s in secrets:
                text = text.replace(s, "***")
            bad[name] = f"{kind.upper()}: {text[-3000:]}"
    if case.find("skipped") is not None:
        skipped += 1
json.dump({"run": run, "skipped": skipped, "bad": bad}, open(sys.argv[2], "w"))
EOF

run_suite() { # name port password
  local name=$1 t0=$SECONDS rc=0
  log "running the suite $name"
  reset_cluster
  local only=()
  if [[ -n "${VIGIL_ASYNCPG_ONLY:-}" ]]; then read -r -a only <<<"$VIGIL_ASYNCPG_ONLY"; fi
  (
    cd "$src"
    env -u PGSERVICE -u PGOPTIONS -u PGSSLMODE PGHOST=127.0.0.1 PGPORT="$2" PGUSER="$IDENTITY" \
      PGPASSWORD="$3" PGDATABASE=postgres \
      timeout 1800 "$venv/bin/python" -m pytest -q -rfE --timeout=60 -p no:cacheprovider \
      --junitxml="$scratch/$name.xml" "${only[@]:-tests}"
  ) >"$scratch/$name.log" 2>&1 || rc=$?
  [[ -f "$scratch/$name.xml" ]] || { tail -n 60 "$scratch/$name.log" >&2; die "the suite $name did not finish (exit $rc)"; }
  PGPASSWORD="$3" python3 "$scratch/junit_to_json.py" "$scratch/$name.xml" "$scratch/$name.json"
  log "  $name: done in $((SECONDS - t0)) s"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$vigil_pid/status"; }

run_suite direct "$pg_port" "$upstream_password"
log "vigil RSS before: $(rss_kb) kB"
for i in $(seq "$RUNS"); do
  run_suite "through-vigil-$i" "$vigil_port" "$token"
  log "vigil RSS after run $i: $(rss_kb) kB"
done
if [[ "$RUNS" -gt 1 ]]; then
  sleep 15
  log "vigil RSS after 15 s idle: $(rss_kb) kB"
fi
unset token upstream_password VIGIL_SUITE_UPSTREAM_PASSWORD

set +e
min_tests=$MIN_TESTS
[[ -z "${VIGIL_ASYNCPG_ONLY:-}" ]] || min_tests=0
status=0
for i in $(seq "$RUNS"); do
  suite_compare "$scratch/direct.json" "$scratch/through-vigil-$i.json" "$min_tests" || status=1
done
set -e
log "total time $((SECONDS - started_at)) s"
if [[ $status -ne 0 ]]; then
  log "vigil log (last lines):"
  tail -n 20 "$scratch/vigil/vigil.log" >&2 || true
fi
exit "$status"
