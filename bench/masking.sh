#!/usr/bin/env bash
# SELECT of 1,000,000 rows x 6 PHI columns, directly and through Vigil with masking on (a column
# rule on each PHI column, detectors on the rest), in text format (psql) and binary format
# (tokio-postgres, crates/vigil/examples/fetch_binary.rs). Runs are interleaved (direct, vigil,
# direct, vigil…) so that a noisy neighbour hits both alike. Prints median wall time, rows/s, the
# vigil/direct ratio per format and the gateway's peak RSS. See docs/MASKING.md and
# docs/BENCHMARKS.md.
#
# Self-contained: builds `vigil` and the example in release mode (unless VIGIL_BIN and
# FETCH_BIN are set), makes a throwaway PostgreSQL 15 cluster on a free loopback port, loads the
# table, starts Vigil in front of it; everything is stopped and removed on exit.
#
# Replay captures are off in this run ([replay] enabled = false): they would write every result
# byte to disk, and what is measured here is masking. Audit recording is on, as always.
#
# Options (environment): ROUNDS (default 3), ROWS (default 1000000), VIGIL_BIN, FETCH_BIN,
# PG_BIN (default /usr/lib/postgresql/15/bin), KEEP=1 (keep the scratch folder),
# FIRST_NAMES=repeat|unique (default repeat: 8 names, as real name columns repeat; unique: a
# different first name on every row, the worst case for the gateway's pseudonym memo).
#
# Besides wall time, the gateway's own CPU time per run is reported (from /proc): it is much
# less sensitive than wall time to what else the machine is doing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-1000000}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
KEEP=${KEEP:-0}
FIRST_NAMES=${FIRST_NAMES:-repeat}

log() { printf 'masking.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROWS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS and ROWS must be positive whole numbers"
case "$FIRST_NAMES" in
  repeat) first_name_sql="(ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda'])[1 + i % 8]" ;;
  unique) first_name_sql="'Name' || i" ;;
  *) die "FIRST_NAMES must be repeat or unique" ;;
esac
command -v psql >/dev/null || die "psql not found (Debian: apt-get install postgresql-client-15)"
command -v python3 >/dev/null || die "python3 not found"
for b in initdb pg_ctl postgres; do
  [[ -x "$PG_BIN/$b" ]] || die "no PostgreSQL server binary $PG_BIN/$b (set PG_BIN)"
done
is_root() { [[ $(id -u) -eq 0 ]]; }
as_service_user() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [[ -z "${VIGIL_BIN:-}" || -z "${FETCH_BIN:-}" ]]; then
  log "building vigil and the binary-format client (cargo build --release)"
  (cd "$ROOT" && cargo build --release -p vigil --bin vigil --example fetch_binary --quiet) || die "cargo build failed"
  target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  VIGIL_BIN=${VIGIL_BIN:-$target_dir/release/vigil}
  FETCH_BIN=${FETCH_BIN:-$target_dir/release/examples/fetch_binary}
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/vigil-maskbench.XXXXXX")
chmod 0711 "$scratch"
pgdata="$scratch/pg/data"
pg_started=""
vigil_pid=""
cleanup() {
  local status=$?
  set +e
  [[ -n "$vigil_pid" ]] && kill -TERM "$vigil_pid" 2>/dev/null && wait "$vigil_pid" 2>/dev/null
  [[ -n "$pg_started" ]] && as_service_user "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
  if [[ "$KEEP" == "1" ]]; then log "scratch folder kept: $scratch"; else rm -rf "$scratch"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# --- PostgreSQL ------------------------------------------------------------------------------
pg_port=$(free_port)
pw=$(secret)
mkdir -p "$scratch/pg"
(umask 077 && printf '%s' "$pw" >"$scratch/pg/pw")
is_root && chown -R postgres:postgres "$scratch/pg"
as_service_user "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=scram-sha-256 -E UTF8 \
  --locale=C.UTF-8 --pwfile="$scratch/pg/pw" >"$scratch/pg/initdb.log" 2>&1 || die "initdb failed"
as_service_user "$PG_BIN/pg_ctl" -D "$pgdata" -w -t 60 -l "$scratch/pg/server.log" \
  -o "-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=256MB" \
  start >/dev/null || die "PostgreSQL did not start"
pg_started=1
direct="host=127.0.0.1 port=$pg_port dbname=postgres user=postgres password=$pw sslmode=disable"
log "loading $ROWS rows"
psql -X -q -v ON_ERROR_STOP=1 "$direct" <<SQL
CREATE TABLE phi (id int PRIMARY KEY, ssn text, first_name text, last_name text, dob date,
                  phone text, email text);
INSERT INTO phi
SELECT i,
       lpad((100 + i % 800)::text, 3, '0') || '-' || lpad((1 + i % 98)::text, 2, '0') || '-' || lpad((1 + i % 9998)::text, 4, '0'),
       $first_name_sql,
       (ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis'])[1 + i % 8],
       DATE '1930-01-01' + (i % 30000),
       '(617) 555-' || lpad((i % 10000)::text, 4, '0'),
       'patient' || i || '@example.com'
FROM generate_series(1, $ROWS) AS i;
VACUUM ANALYZE phi;
SQL

# --- Vigil with masking on -----------------------------------------------------------------
vigil_port=$(free_port)
mkdir -p "$scratch/vigil"
config="$scratch/vigil/vigil.toml"
cat >"$config" <<EOF
data_dir = "data"
[replay]
enabled = false
[[listeners]]
address = "127.0.0.1:$vigil_port"
[[connections]]
name = "bench"
host = "127.0.0.1"
port = $pg_port
database = "postgres"
user = "postgres"
password = "env:VIGIL_BENCH_UPSTREAM_PASSWORD"
tls = "disable"
[[identities]]
name = "bench"
connections = ["bench"]
[[policies]]
name = "bench"
identities = ["bench"]
connections = ["bench"]
[policies.scope]
commands = ["read", "session", "transaction"]
relations = ["*"]

[masking]
hmac_key = "env:VIGIL_BENCH_MASK_KEY"
[[masking.rules]]
name = "ssn"
columns = ["*.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }
[[masking.rules]]
name = "first-name"
columns = ["phi.first_name"]
entity = "person_name"
operator = { kind = "hmac", prefix = "p_", length = 12 }
[[masking.rules]]
name = "last-name"
columns = ["phi.last_name"]
entity = "person_name"
operator = "redact"
[[masking.rules]]
name = "dob"
columns = ["phi.dob"]
entity = "date"
operator = "generalize"
[[masking.rules]]
name = "phone"
columns = ["phi.phone"]
entity = "phone"
operator = { kind = "partial", keep = 2 }
[[masking.rules]]
name = "email"
columns = ["phi.email"]
entity = "email"
operator = "redact"
EOF
export VIGIL_BENCH_UPSTREAM_PASSWORD="$pw"
export VIGIL_BENCH_MASK_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
token=$("$VIGIL_BIN" token create --identity bench --config "$config" 2>"$scratch/vigil/token.log") ||
  { cat "$scratch/vigil/token.log" >&2; die "token create failed"; }
"$VIGIL_BIN" serve --config "$config" >"$scratch/vigil/vigil.log" 2>&1 &
vigil_pid=$!
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$vigil_port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$vigil_pid" 2>/dev/null || { cat "$scratch/vigil/vigil.log" >&2; die "vigil did not start"; }
through="host=127.0.0.1 port=$vigil_port dbname=bench user=bench password=$token sslmode=disable"
query="SELECT id, ssn, first_name, last_name, dob, phone, email FROM phi"

# Sanity: masked through Vigil.
sample=$(psql -X -A -t "$through" -c "$query LIMIT 1")
[[ "$sample" == *"***-**-"* && "$sample" == *"[REDACTED:"* ]] || die "masking is not on: $sample"
log "sample row through Vigil: $sample"
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$vigil_pid/status")

time_text() { # conninfo -> seconds
  local s e
  s=$(date +%s.%N)
  psql -X -A -t -o /dev/null "$1" -c "$query"
  e=$(date +%s.%N)
  python3 -c "print(f'{$e - $s:.3f}')"
}
time_binary() { "$FETCH_BIN" "$1" "$query" | awk '{print $2}'; }

results="$scratch/runs.csv"
echo "round,format,target,seconds,vigil_cpu" >"$results"
vigil_cpu() { awk '{print $14 + $15}' "/proc/$vigil_pid/stat"; } # clock ticks (user + system)
ticks=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
  for format in text binary; do
    for target in direct vigil; do
      conn=$direct; [[ $target == vigil ]] && conn=$through
      cpu_before=$(vigil_cpu)
      if [[ $format == text ]]; then secs=$(time_text "$conn"); else secs=$(time_binary "$conn"); fi
      cpu=$(python3 -c "print(f'{($(vigil_cpu) - $cpu_before) / $ticks:.2f}')")
      echo "$r,$format,$target,$secs,$cpu" >>"$results"
      log "round $r $format $target: ${secs}s (gateway CPU ${cpu}s)"
    done
  done
done
rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$vigil_pid/status")
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$vigil_pid/status")

python3 - "$results" "$ROWS" "$rss_before" "$rss_after" "$rss_peak" "$FIRST_NAMES" <<'PY'
import csv, statistics, sys
path, rows, before, after, peak = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
names = sys.argv[6]
runs = list(csv.DictReader(open(path)))
print(f"{rows} rows x 6 PHI columns (+ id), masking on through Vigil, first names: {names}; medians of {len(runs)//4} interleaved rounds\n")
print("| format | direct s | vigil s | ratio | direct rows/s | vigil rows/s | gateway CPU s | gateway CPU per row |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for fmt in ("text", "binary"):
    med = {t: statistics.median(float(r["seconds"]) for r in runs if r["format"] == fmt and r["target"] == t) for t in ("direct", "vigil")}
    cpu = statistics.median(float(r["vigil_cpu"]) for r in runs if r["format"] == fmt and r["target"] == "vigil")
    print(f"| {fmt} | {med['direct']:.2f} | {med['vigil']:.2f} | {med['vigil']/med['direct']:.2f}x | {rows/med['direct']:,.0f} | {rows/med['vigil']:,.0f} | {cpu:.2f} | {cpu/rows*1e9:,.0f} ns |")
print(f"\nVigil RSS: {before/1024:.1f} MiB before, {after/1024:.1f} MiB after, peak {peak/1024:.1f} MiB")
PY
