#!/usr/bin/env bash
# node-postgres's own integration tests (pure JavaScript client: extended protocol with unnamed
# and named statements, pipelining, COPY, cancel, LISTEN), run directly against
# PostgreSQL and then through Vigil: Vigil is transparent to the driver if both runs fail the
# *same set* of test files (two fail even directly: they need a server with TLS).
#
# The npm package `pg` ships no tests, so the script needs node-postgres's source:
# VIGIL_NODE_PG_SRC names a checkout of the brianc/node-postgres repository (or of its
# packages/pg) or a tarball of one. Without it the script says how to get one and exits with
# status 3. Its packages/pg is copied into a cache folder and its dependencies, dev
# dependencies included, installed there with npm (once per source: later runs need no network).
#
# Self-contained otherwise: builds `vigil` (unless VIGIL_BIN is set), makes a throwaway
# PostgreSQL 15 cluster with SCRAM-SHA-256 auth and a Vigil config in a scratch folder, issues a
# token, runs every test/integration/**/*-tests.js with node (as the package's Makefile does)
# directly and through Vigil, a fresh test database each time, compares, and removes everything
# it started on exit. The suite's harness stops a file at its first failing test, so files are
# compared, not tests.
#
# Environment:
#   VIGIL_NODE_PG_SRC         node-postgres checkout or tarball (.tar, .tar.gz, .tgz); required
#   VIGIL_BIN                 vigil binary to test (default: cargo build --release -p vigil)
#   VIGIL_NODE_PG_CACHE       cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/vigil-node-postgres)
#   PG_BIN                    PostgreSQL 15 server binaries (default /usr/lib/postgresql/15/bin)
#   VIGIL_SUITE_KEEP=1        keep the scratch folder (logs of every file, results) after the run
#   VIGIL_NODE_PG_ONLY=...    run only these files (paths under packages/pg, space-separated)
#   VIGIL_NODE_PG_FILE_TIMEOUT  seconds after which a file counts as hung (default 120)
#
# Exit status: 0 when the suite ran (> MIN_FILES files) and the failure sets are equal; 3 when
# no node-postgres source was given; 1 otherwise.
set -euo pipefail

SUITE=node-postgres
# shellcheck source=lib/suite.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/suite.sh"
CACHE=${VIGIL_NODE_PG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-node-postgres}
MIN_FILES=70
FILE_TIMEOUT=${VIGIL_NODE_PG_FILE_TIMEOUT:-120}
IDENTITY=node_pg
# The suite's database (PGDATABASE), and template1, where gh-issues/130-tests.js runs psql
# (with the same PG* variables) to terminate one of its backends. It creates no others.
DB=node_pg_test
DATABASES=("$DB" template1)
NO_SOURCE_STATUS=3

started_at=$SECONDS

# --- node-postgres source ---------------------------------------------------------------------
if [[ -z "${VIGIL_NODE_PG_SRC:-}" ]]; then
  cat >&2 <<'EOF'
node-postgres-suite: VIGIL_NODE_PG_SRC is not set.

The npm package `pg` has no tests; this script runs those of node-postgres's repository. Get
the source of the release you want to test (the newest `pg` 8.x: `npm view pg version`), e.g.

  git clone --depth 1 --branch pg@8.23.0 https://github.com/brianc/node-postgres /tmp/node-postgres
  VIGIL_NODE_PG_SRC=/tmp/node-postgres scripts/node-postgres-suite.sh

or a tarball of it (GitHub's https://github.com/brianc/node-postgres/archive/refs/tags/pg@8.23.0.tar.gz,
or `git -C <clone> archive -o /tmp/node-postgres.tar.gz pg@8.23.0`):

  VIGIL_NODE_PG_SRC=/tmp/node-postgres.tar.gz scripts/node-postgres-suite.sh
EOF
  exit "$NO_SOURCE_STATUS"
fi
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed"

src_in=$VIGIL_NODE_PG_SRC
[[ -e "$src_in" ]] || die "VIGIL_NODE_PG_SRC: no such file or folder: $src_in"
mkdir -p "$CACHE"
unpacked=""
if [[ -f "$src_in" ]]; then
  unpacked=$(mktemp -d "$CACHE/unpack.XXXXXX")
  trap 'rm -rf "$unpacked"' EXIT # until suite_scratch sets its own
  tar xf "$src_in" -C "$unpacked" || die "VIGIL_NODE_PG_SRC: not a tarball: $src_in"
  src_in=$unpacked
fi
# packages/pg of the monorepo (at the top or one folder down, as in GitHub's tarballs), or the
# package itself.
pkg=""
for candidate in "$src_in" "$src_in/packages/pg" "$src_in"/*/packages/pg; do
  if [[ -f "$candidate/package.json" && -d "$candidate/test/integration" ]] &&
    [[ $(node -p 'require(process.argv[1]).name' "$candidate/package.json") == pg ]]; then
    pkg=$candidate
    break
  fi
done
[[ -n "$pkg" ]] || die "VIGIL_NODE_PG_SRC: no node-postgres packages/pg with test/integration in $VIGIL_NODE_PG_SRC"
pg_version=$(node -p 'require(process.argv[1]).version' "$pkg/package.json")
# One installed copy per source content: a changed checkout gets a fresh install.
src_hash=$(cd "$pkg" && find lib test package.json -type f -print0 | LC_ALL=C sort -z |
  xargs -0 sha256sum | sha256sum | cut -c1-12)
src="$CACHE/pg-$pg_version-$src_hash"
if [[ ! -f "$src/.ready" ]]; then
  log "installing pg $pg_version's tests and dev dependencies into $src (npm)"
  rm -rf "$src"
  mkdir -p "$src"
  # Outside the monorepo, npm installs the package alone: its sibling packages (pg-protocol,
  # pg-pool, ...) come from the registry, as for any user of pg.
  (cd "$pkg" && tar cf - --exclude=node_modules .) | (cd "$src" && tar xf -)
  (cd "$src" && npm install --ignore-scripts --no-audit --no-fund --no-package-lock \
    --loglevel=error) >&2 || die "npm install failed"
  touch "$src/.ready"
fi
[[ -z "$unpacked" ]] || rm -rf "$unpacked"
log "pg $pg_version's integration tests from $src"

suite_vigil_bin
suite_scratch
suite_start_pg "-c max_connections=100"
# The suite runs as the role node_pg on both paths: directly, and as Vigil's upstream login
# (named like the Vigil identity, so current_user is what the driver believes it is). A
# superuser, as some tests need (pg_terminate_backend on their own sessions, settings).
printf "CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s';\n" "$IDENTITY" "$upstream_password" |
  psql_direct -d postgres -f - >/dev/null
reset_database() {
  psql_direct -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  psql_direct -d postgres -c "CREATE DATABASE $DB OWNER $IDENTITY" >/dev/null
}

# --- Vigil ----------------------------------------------------------------------------------
# Everything a driver can do, and the catalog side channel a test reads (pg_stat_activity, to
# find its own backend) named.
connections=""
for db in "${DATABASES[@]}"; do
  connections+=$(printf '\n[[connections]]\nname = "%s"\nprotocol = "postgres"\nhost = "127.0.0.1"\nport = %s\ndatabase = "%s"\nuser = "%s"\npassword = "env:VIGIL_SUITE_UPSTREAM_PASSWORD"\ntls = "disable"\n' \
    "$db" "$pg_port" "$db" "$IDENTITY")
done
list=$(printf '"%s", ' "${DATABASES[@]}")
list="[${list%, }]"
suite_start_vigil "$(cat <<EOF
$connections

[[identities]]
name = "$IDENTITY"
kind = "machine"
connections = $list

[[policies]]
name = "node-postgres-suite"
identities = ["$IDENTITY"]
connections = $list
[policies.scope]
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
relations = ["*", "pg_catalog.pg_stat_activity"]
functions = ["*", "pg_notify", "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_backend_pid", "pg_sleep"]
allow = ["do", "create_function", "set_role", "set_session_authorization", "set_search_path", "function_call", "copy_file", "create_extension", "set_protected_setting"]
EOF
)" "$IDENTITY"

# --- the suite --------------------------------------------------------------------------------
files=()
if [[ -n "${VIGIL_NODE_PG_ONLY:-}" ]]; then
  read -r -a files <<<"$VIGIL_NODE_PG_ONLY"
else
  mapfile -t files < <(cd "$src" && find test/integration -name '*-tests.js' | LC_ALL=C sort)
fi
[[ ${#files[@]} -gt 0 ]] || die "no test files"

# Each file's log (secrets redacted) as {"run", "skipped", "bad": {file: log tail}}.
cat >"$scratch/results_to_json.py" <<'EOF'
import json, os, sys

folder, out = sys.argv[1], sys.argv[2]
secrets = [s for s in (os.environ.get("SUITE_SECRET_1"), os.environ.get("SUITE_SECRET_2")) if s]
run, bad = 0, {}
for line in open(os.path.join(folder, "status")):
    name, status = line.rsplit(" ", 1)
    run += 1
    if status.strip() != "0":
        text = open(os.path.join(folder, name.replace("/", "__") + ".log"), errors="replace").read()
        for s in secrets:
            text = text.replace(s, "***")
        kind = "TIMED OUT" if status.strip() == "124" else f"EXIT {status.strip()}"
        bad[name] = f"{kind}: ...{text[-3000:]}"
json.dump({"run": run, "skipped": 0, "bad": bad}, open(out, "w"))
EOF

# SCRAM_TEST_* stay unset, so sasl-scram-tests.js skips its tests on both paths: through Vigil
# the driver sends its password (the token) in cleartext, as Vigil asks every client to
# (docs/ARCHITECTURE.md), so its checks that the driver chose SCRAM cannot hold. The direct run
# and Vigil's upstream logins use the cluster's SCRAM-SHA-256.
run_suite() { # name port password
  local name=$1 t0=$SECONDS out="$scratch/$1" file rc
  log "running the suite $name (${#files[@]} files)"
  reset_database
  mkdir -p "$out"
  : >"$out/status"
  for file in "${files[@]}"; do
    rc=0
    (
      cd "$src"
      env -u PGSERVICE -u PGOPTIONS -u PGSSLMODE -u PGAPPNAME -u SCRAM_TEST_PGUSER \
        -u SCRAM_TEST_PGPASSWORD -u SCRAM_TEST_PGUSER_UNICODE -u SCRAM_TEST_PGPASSWORD_UNICODE \
        PGHOST=127.0.0.1 PGPORT="$2" \
        PGUSER="$IDENTITY" PGPASSWORD="$3" PGDATABASE="$DB" \
        timeout -k 10 "$FILE_TIMEOUT" node "$file"
    ) >"$out/${file//\//__}.log" 2>&1 </dev/null || rc=$?
    printf '%s %s\n' "$file" "$rc" >>"$out/status"
    [[ $rc -eq 0 ]] || log "  $name: $file failed (exit $rc)"
  done
  SUITE_SECRET_1="$3" SUITE_SECRET_2="$upstream_password" \
    python3 "$scratch/results_to_json.py" "$out" "$scratch/$name.json"
  log "  $name: done in $((SECONDS - t0)) s"
}

run_suite direct "$pg_port" "$upstream_password"
run_suite through-vigil "$vigil_port" "$token"
unset token upstream_password VIGIL_SUITE_UPSTREAM_PASSWORD

# --- compare ------------------------------------------------------------------------------------
set +e
min_files=$MIN_FILES
[[ -z "${VIGIL_NODE_PG_ONLY:-}" ]] || min_files=0
suite_compare "$scratch/direct.json" "$scratch/through-vigil.json" "$min_files"
status=$?
set -e
log "total time $((SECONDS - started_at)) s"
if [[ $status -ne 0 ]]; then
  log "vigil log (last lines):"
  tail -n 20 "$scratch/vigil/vigil.log" >&2 || true
fi
exit "$status"
