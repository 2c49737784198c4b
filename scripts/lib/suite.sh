# Shared by the driver-suite scripts (psycopg2-suite.sh, asyncpg-suite.sh): a throwaway
# PostgreSQL 15 cluster with SCRAM-SHA-256, a Vigil in front of it, cleanup on exit, and the
# comparison of the failure sets of a suite run directly and through Vigil.
#
# Source it after setting SUITE (a short name for logs and the scratch folder). It reads
# VIGIL_BIN, PG_BIN and VIGIL_SUITE_KEEP=1 (keep the scratch folder).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf '%s-suite: %s\n' "$SUITE" "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# The vigil binary: VIGIL_BIN, or a release build.
suite_vigil_bin() {
  if [[ -z "${VIGIL_BIN:-}" ]]; then
    log "building vigil (release)"
    (cd "$ROOT" && cargo build --release -p vigil --quiet)
    local target_dir
    target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    VIGIL_BIN="$target_dir/release/vigil"
  fi
  [[ -x "$VIGIL_BIN" ]] || die "no vigil binary at $VIGIL_BIN"
  [[ -x "$PG_BIN/initdb" ]] || die "no PostgreSQL server binaries in $PG_BIN"
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

vigil_pid=""
pg_started=""

suite_cleanup() {
  local status=$?
  set +e
  if [[ -n "$vigil_pid" ]]; then
    kill -TERM "$vigil_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$vigil_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$vigil_pid" 2>/dev/null
    wait "$vigil_pid" 2>/dev/null
  fi
  if [[ -n "$pg_started" ]]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
  fi
  if [[ "${VIGIL_SUITE_KEEP:-0}" == "1" ]]; then
    log "scratch folder kept: $scratch"
  else
    rm -rf "$scratch"
  fi
  exit "$status"
}

# A scratch folder removed on exit (with what was started in it).
suite_scratch() {
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/vigil-$SUITE.XXXXXX")
  chmod 0711 "$scratch"
  pgdata="$scratch/pg/data"
  trap suite_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Starts PostgreSQL 15 with SCRAM-SHA-256; $1: extra server options. Sets pg_port and
# upstream_password (the password of the role postgres).
suite_start_pg() {
  pg_port=$(free_port)
  upstream_password=$(secret)
  mkdir -p "$scratch/pg"
  (umask 077 && printf '%s' "$upstream_password" >"$scratch/pg/pw")
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$scratch/pg"; fi
  as_postgres "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 --pwfile="$scratch/pg/pw" >"$scratch/pg/initdb.log" 2>&1 ||
    { cat "$scratch/pg/initdb.log" >&2; die "initdb failed"; }
  rm -f "$scratch/pg/pw"
  local opts="-p $pg_port -k '$scratch/pg' -c listen_addresses=127.0.0.1 -c fsync=off ${1:-}"
  pg_started=1 # from here on, cleanup stops it (harmless if it never started)
  as_postgres "$PG_BIN/pg_ctl" -D "$pgdata" -o "$opts" -w -t 60 -l "$scratch/pg/server.log" \
    start >/dev/null || { cat "$scratch/pg/server.log" >&2; die "PostgreSQL did not start"; }
}

# psql as postgres, directly.
psql_direct() {
  PGPASSWORD="$upstream_password" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
    -U postgres "$@"
}

# Starts Vigil with a config whose tail ($1: connections, identities, policies) the suite
# writes; upstream passwords are read from VIGIL_SUITE_UPSTREAM_PASSWORD. Issues a token for
# identity $2 into `token`. Sets vigil_port.
suite_start_vigil() {
  vigil_port=$(free_port)
  local api_port
  api_port=$(free_port)
  mkdir -p "$scratch/vigil"
  config="$scratch/vigil/vigil.toml"
  {
    printf 'data_dir = "data"\n\n[api]\nlisten = "127.0.0.1:%s"\n' "$api_port"
    printf 'admin_token = "env:VIGIL_SUITE_ADMIN_TOKEN"\n\n'
    printf '[[listeners]]\nprotocol = "postgres"\naddress = "127.0.0.1:%s"\n\n' "$vigil_port"
    printf '%s\n' "$1"
    # VIGIL_SUITE_LIMITS: extra [limits] keys (e.g. analysis_cache_mib = 8), for experiments.
    if [[ -n "${VIGIL_SUITE_LIMITS:-}" ]]; then printf '\n[limits]\n%s\n' "$VIGIL_SUITE_LIMITS"; fi
  } >"$config"
  export VIGIL_SUITE_UPSTREAM_PASSWORD="$upstream_password"
  VIGIL_SUITE_ADMIN_TOKEN=$(secret)
  export VIGIL_SUITE_ADMIN_TOKEN
  token=$("$VIGIL_BIN" token create --identity "$2" --config "$config" 2>"$scratch/vigil/token.log") ||
    { cat "$scratch/vigil/token.log" >&2; die "vigil token create failed"; }
  [[ -n "$token" ]] || die "vigil token create printed no token"
  RUST_LOG=${RUST_LOG:-info} "$VIGIL_BIN" serve --config "$config" >"$scratch/vigil/vigil.log" 2>&1 &
  vigil_pid=$!
  for _ in $(seq 300); do
    if ! kill -0 "$vigil_pid" 2>/dev/null; then
      cat "$scratch/vigil/vigil.log" >&2
      die "vigil exited early"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$vigil_port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$vigil_port") 2>/dev/null || die "vigil is not listening"
}

# Compares two results ({"run", "skipped", "bad": {test: trace}}): $1 direct, $2 through Vigil,
# $3 the fewest tests a complete run has. Exit status 0 when the failure sets are equal.
suite_compare() {
  python3 - "$1" "$2" "$3" "$SUITE" <<'EOF'
import json, sys

direct, vigil = (json.load(open(p)) for p in sys.argv[1:3])
min_tests, suite = int(sys.argv[3]), sys.argv[4]
d, v = set(direct["bad"]), set(vigil["bad"])


def show(title, ids):
    print(f"{title}: {len(ids)}")
    for i in sorted(ids):
        print(f"  {i}")


print(f"direct:        {direct['run']} tests, {len(d)} failed or errored, {direct['skipped']} skipped")
print(f"through Vigil: {vigil['run']} tests, {len(v)} failed or errored, {vigil['skipped']} skipped")
show("failing in both", d & v)
show("failing only through Vigil", v - d)
show("failing only directly", d - v)
for i in sorted(v - d):
    print(f"\n=== through Vigil: {i}\n{vigil['bad'][i]}")
for i in sorted(d - v):
    print(f"\n=== directly: {i}\n{direct['bad'][i]}")
ok = True
if min(direct["run"], vigil["run"]) <= min_tests:
    print(f"the suite ran too few tests (expected more than {min_tests})")
    ok = False
if direct["run"] != vigil["run"]:
    print("the two runs ran different numbers of tests")
    ok = False
if d != v:
    ok = False
print(f"{suite} suite through Vigil: " + ("same failures as directly" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
EOF
}
