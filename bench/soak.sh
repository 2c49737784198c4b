#!/usr/bin/env bash
# Mixed-client soak: many kinds of client through one Vigil for a long while (default 30
# minutes), the gateway's memory and the data folder sampled all along. Reports whether RSS stayed
# flat after warm-up, whether the replay directory stayed within its bounds, what the audit
# store grew by per session, and whether the audit chain still verifies. See bench/README.md.
#
# The clients, all at once, each against the real gateway:
#   - pgbench, extended protocol with prepared statements, 2 long sessions (read-write TPC-B)
#   - pgbench -C: a new session for every transaction, rate-limited (session churn)
#   - psql loops (simple protocol), each iteration a new session: a masked read of PHI rows, a
#     COPY out, and a write the policy refuses
#   - asyncpg (binary format, pipelining, executemany, COPY in, reconnects), when a Python with
#     asyncpg is available (VIGIL_SOAK_PYTHON, or the venv scripts/asyncpg-suite.sh caches)
#
# Self-contained: builds `vigil` (unless VIGIL_BIN is set), makes a throwaway PostgreSQL 15
# cluster (SCRAM-SHA-256, free loopback port) and a Vigil in front of it; everything it started
# is stopped and removed on exit.
#
# Options (each also an environment variable):
#   -d, --duration S     DURATION   seconds of load (default 1800)
#   -i, --interval S     INTERVAL   seconds between samples (default 5)
#   -o, --out DIR        OUT        results folder (default target/bench/soak-<UTC timestamp>)
#   -k, --keep           KEEP=1     keep the scratch folder
#   -c, --clients LIST   CLIENTS    which clients run (default all: "pgbench-prepared pgbench-churn
#                                   psql asyncpg"), to tell which kind a change in memory follows
#   --churn-rate TPS     CHURN_RATE sessions a second pgbench -C opens (default 5)
#   VIGIL_BIN          vigil binary (default: cargo build --release -p vigil)
#   VIGIL_SOAK_PYTHON  a python3 that can `import asyncpg` (default: the asyncpg-suite venv if
#                      cached; otherwise the asyncpg client is left out, and the summary says so)
#   PG_BIN             PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   VIGIL_SOAK_LIMITS  extra [limits] keys for the gateway (e.g. "analysis_cache_mib = 8")
#
# Output: a summary on stdout; in OUT: samples.csv (time, RSS, heap, open files, threads, store and replay bytes,
# sessions ended), summary.json. Exit 1 when the gateway died, RSS grew after warm-up (the median
# of the last fifth of the run above 1.15 x the median of the second fifth + 8 MiB), the replay
# directory passed its bounds, a client saw an error it should not have, or the chain does not
# verify.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-1800}
INTERVAL=${INTERVAL:-5}
OUT=${OUT:-}
KEEP=${KEEP:-0}
CLIENTS=${CLIENTS:-pgbench-prepared pgbench-churn psql asyncpg}
CHURN_RATE=${CHURN_RATE:-5}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MAX_SESSION=$((4 * 1048576))
MAX_TOTAL=$((128 * 1048576))

log() { printf 'soak.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -d | --duration) DURATION=$2; shift 2 ;;
    -i | --interval) INTERVAL=$2; shift 2 ;;
    -o | --out) OUT=$2; shift 2 ;;
    -k | --keep) KEEP=1; shift ;;
    -c | --clients) CLIENTS=$2; shift 2 ;;
    --churn-rate) CHURN_RATE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for v in DURATION INTERVAL CHURN_RATE; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number (got '${!v}')"
done
((DURATION >= 10 * INTERVAL)) || die "DURATION must be at least 10 samples long (10 x INTERVAL)"

for c in psql pgbench python3; do
  command -v "$c" >/dev/null || die "$c not found (Debian: apt-get install postgresql-client-15 postgresql-contrib python3)"
done
for b in initdb pg_ctl postgres; do
  [[ -x "$PG_BIN/$b" ]] || die "no PostgreSQL server binary $PG_BIN/$b (set PG_BIN)"
done
is_root() { [[ $(id -u) -eq 0 ]]; }
if is_root; then
  id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL as"
fi
as_service_user() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [[ -z "${VIGIL_BIN:-}" ]]; then
  command -v cargo >/dev/null || die "cargo not found: set VIGIL_BIN to a vigil binary"
  log "building vigil (cargo build --release -p vigil)"
  (cd "$ROOT" && cargo build --release -p vigil --quiet) || die "cargo build failed"
  target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  VIGIL_BIN="$target_dir/release/vigil"
fi
[[ -x "$VIGIL_BIN" ]] || die "no vigil binary at $VIGIL_BIN"

python_asyncpg=${VIGIL_SOAK_PYTHON:-}
if [[ -z "$python_asyncpg" ]]; then
  for p in "${VIGIL_ASYNCPG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil-asyncpg}"/venv-*/bin/python; do
    [[ -x "$p" ]] && python_asyncpg=$p
  done
fi
if [[ -n "$python_asyncpg" ]] && ! "$python_asyncpg" -c 'import asyncpg' 2>/dev/null; then
  die "VIGIL_SOAK_PYTHON=$python_asyncpg cannot import asyncpg"
fi
[[ -n "$python_asyncpg" ]] || log "no python with asyncpg (set VIGIL_SOAK_PYTHON): the asyncpg client is left out"

OUT=${OUT:-$ROOT/target/bench/soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vigil-soak.XXXXXX")
chmod 0711 "$scratch"
pgdata="$scratch/pg/data"
pg_started=""
vigil_pid=""
client_pids=()

stop_pid() {
  local pid=$1
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  set +e
  for p in "${client_pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; stop_pid "$p"; done
  stop_pid "$vigil_pid"
  if [[ -n "$pg_started" ]]; then
    as_service_user "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
  fi
  if [[ "$KEEP" == "1" ]]; then log "scratch folder kept: $scratch"; else rm -rf "$scratch"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
wait_port() {
  for _ in $(seq 300); do
    if [[ -n "$2" ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# --- PostgreSQL 15, with pgbench's tables and a table of (synthetic) PHI ----------------------
pg_port=$(free_port)
upstream_password=$(secret)
mkdir -p "$scratch/pg"
(umask 077 && printf '%s' "$upstream_password" >"$scratch/pg/pw")
is_root && chown -R postgres:postgres "$scratch/pg"
as_service_user "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=scram-sha-256 -E UTF8 \
  --locale=C.UTF-8 --pwfile="$scratch/pg/pw" >"$scratch/pg/initdb.log" 2>&1 ||
  { cat "$scratch/pg/initdb.log" >&2; die "initdb failed"; }
rm -f "$scratch/pg/pw"
as_service_user "$PG_BIN/pg_ctl" -D "$pgdata" \
  -o "-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
  -w -t 60 -l "$scratch/pg/server.log" start >/dev/null ||
  { cat "$scratch/pg/server.log" >&2; die "PostgreSQL did not start"; }
pg_started=1
direct() { PGPASSWORD="$upstream_password" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"; }
PGPASSWORD="$upstream_password" pgbench -q -i -s 4 -h 127.0.0.1 -p "$pg_port" -U postgres postgres \
  >"$scratch/pg/pgbench-init.log" 2>&1 || { cat "$scratch/pg/pgbench-init.log" >&2; die "pgbench -i failed"; }
direct >/dev/null <<'SQL'
CREATE SCHEMA clinic;
CREATE TABLE clinic.patients (
  id int PRIMARY KEY, first_name text, last_name text, ssn text, dob date, phone text, notes text);
INSERT INTO clinic.patients
SELECT i, (ARRAY['James','Mary','Robert','Patricia'])[1 + i % 4], 'Name' || i,
       lpad((100000000 + i * 7919 % 800000000)::text, 9, '0'),
       date '1950-01-01' + (i * 37 % 20000),
       '555-' || lpad((i % 10000)::text, 4, '0'),
       'follow-up call ' || '(555) 201-' || lpad((i % 10000)::text, 4, '0')
FROM generate_series(1, 20000) i;
CREATE TABLE clinic.events (id bigserial PRIMARY KEY, patient_id int, kind text, at timestamptz DEFAULT now());
SQL

# --- Vigil ---------------------------------------------------------------------------------------
vigil_port=$(free_port)
mkdir -p "$scratch/vigil"
config="$scratch/vigil/vigil.toml"
cat >"$config" <<EOF
data_dir = "data"

[replay]
max_session_bytes = $MAX_SESSION
max_total_bytes = $MAX_TOTAL

[[listeners]]
address = "127.0.0.1:$vigil_port"

[[connections]]
name = "soak"
host = "127.0.0.1"
port = $pg_port
database = "postgres"
user = "postgres"
password = "env:VIGIL_SOAK_UPSTREAM_PASSWORD"
tls = "disable"

[[identities]]
name = "app"
connections = ["soak"]

[[identities]]
name = "analyst"
connections = ["soak"]

[[policies]]
name = "app"
identities = ["app"]
connections = ["soak"]
[policies.scope]
commands = ["read", "write", "copy_in", "transaction", "session"]
# pgbench and asyncpg read the catalog (partitions; column types for COPY).
relations = ["public.pgbench_*", "clinic.events", "pg_catalog.*"]
# asyncpg turns JIT off around its type introspection (set_config('jit', 'off', false)).
functions = ["set_config", "current_setting"]

[[policies]]
name = "analyst"
identities = ["analyst"]
connections = ["soak"]
[policies.scope]
commands = ["read", "copy_out", "transaction", "session"]
relations = ["clinic.*"]

[masking]
hmac_key = "env:VIGIL_SOAK_MASK_KEY"
[[masking.rules]]
name = "ssn"
columns = ["clinic.patients.ssn"]
entity = "ssn"
operator = { kind = "partial", keep = 4 }
[[masking.rules]]
name = "names"
columns = ["clinic.patients.first_name", "clinic.patients.last_name"]
entity = "person_name"
operator = { kind = "hmac", prefix = "p_", length = 12 }
[[masking.rules]]
name = "dob"
columns = ["clinic.patients.dob"]
entity = "date"
operator = "generalize"
EOF
if [[ -n "${VIGIL_SOAK_LIMITS:-}" ]]; then printf '\n[limits]\n%s\n' "$VIGIL_SOAK_LIMITS" >>"$config"; fi
export VIGIL_SOAK_UPSTREAM_PASSWORD="$upstream_password"
VIGIL_SOAK_MASK_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export VIGIL_SOAK_MASK_KEY
"$VIGIL_BIN" config check --config "$config" >/dev/null 2>"$scratch/vigil/check.log" ||
  { cat "$scratch/vigil/check.log" >&2; die "vigil config check failed"; }
app_token=$("$VIGIL_BIN" token create --identity app --config "$config" 2>>"$scratch/vigil/token.log") ||
  { cat "$scratch/vigil/token.log" >&2; die "vigil token create failed"; }
analyst_token=$("$VIGIL_BIN" token create --identity analyst --config "$config" 2>>"$scratch/vigil/token.log") ||
  { cat "$scratch/vigil/token.log" >&2; die "vigil token create failed"; }
RUST_LOG=${RUST_LOG:-warn} "$VIGIL_BIN" serve --config "$config" >"$scratch/vigil/vigil.log" 2>&1 &
vigil_pid=$!
wait_port "$vigil_port" "$vigil_pid" || { cat "$scratch/vigil/vigil.log" >&2; die "vigil did not start"; }
data_dir="$scratch/vigil/data"

# --- clients -------------------------------------------------------------------------------------
deadline=$((SECONDS + DURATION))
export PGSSLMODE=disable PGHOST=127.0.0.1 PGPORT=$vigil_port PGDATABASE=soak

# Each client writes "<name> <ok> <unexpected>" to client-<name>.count when it stops; the first
# unexpected output goes to client-<name>.err.
pgbench_client() { # name extra-args...
  local name=$1
  shift
  local status=0
  PGPASSWORD="$app_token" PGUSER=app pgbench -n -T "$DURATION" "$@" soak \
    >"$scratch/client-$name.out" 2>"$scratch/client-$name.err" || status=$?
  local done_tx
  done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$scratch/client-$name.out")
  local failed
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$scratch/client-$name.out")
  echo "$name ${done_tx:-0} $(( status != 0 ? 1 : ${failed:-0} ))" >"$scratch/client-$name.count"
}

psql_client() { # name
  local name=$1 ok=0 bad=0 n=0 out
  while ((SECONDS < deadline)); do
    n=$((n + 1))
    # A masked read: SSNs must come back masked (partial keeps 4 digits), never whole.
    if out=$(PGPASSWORD="$analyst_token" PGUSER=analyst psql -X -q -A -t -v ON_ERROR_STOP=1 \
      -c "SELECT ssn, first_name, dob, notes FROM clinic.patients WHERE id BETWEEN $((n % 19000 + 1)) AND $((n % 19000 + 400))" \
      -c "\\copy (SELECT id, kind FROM clinic.events ORDER BY id DESC LIMIT 200) TO '/dev/null'" 2>&1) &&
      ! grep -Eq '(^|\|)[0-9]{9}\|' <<<"$out"; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      [[ -s "$scratch/client-$name.err" ]] || printf 'read: %s\n' "${out:0:300}" >"$scratch/client-$name.err"
    fi
    # A write the policy refuses: SQLSTATE 42501 is the expected answer.
    out=$(PGPASSWORD="$analyst_token" PGUSER=analyst psql -X -q -A -t \
      -c "\\set VERBOSITY sqlstate" -c "UPDATE clinic.patients SET notes = 'x' WHERE id = $n" 2>&1 || true)
    if [[ "$out" == *42501* ]]; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
      [[ -s "$scratch/client-$name.err" ]] || printf 'refusal: %s\n' "${out:0:300}" >"$scratch/client-$name.err"
    fi
    sleep 0.1
  done
  echo "$name $ok $bad" >"$scratch/client-$name.count"
}

asyncpg_client() { # name
  local name=$1
  "$python_asyncpg" - "$name" "$DURATION" "$vigil_port" "$app_token" "$scratch" <<'PY'
import asyncio, os, sys, time
import asyncpg

name, duration, port, token, scratch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ok = bad = 0
first_error = None

async def one_session(deadline, k):
    # Each session writes and deletes only its own rows: no lock order to deadlock on.
    mine = [f"visit-{k}", f"copy-{k}"]
    global ok, bad, first_error
    con = await asyncpg.connect(host="127.0.0.1", port=port, user="app", password=token,
                                database="soak", ssl=False)
    try:
        for _ in range(50):
            if time.monotonic() > deadline:
                break
            try:
                async with con.transaction():
                    await con.executemany(
                        "INSERT INTO clinic.events (patient_id, kind) VALUES ($1, $2)",
                        [(i, mine[0]) for i in range(20)])
                    rows = await con.fetch(
                        "SELECT aid, abalance FROM pgbench_accounts WHERE aid = ANY($1::int[])",
                        list(range(1, 200, 3)))
                    assert len(rows) == 67, len(rows)
                await con.copy_records_to_table(
                    "events", schema_name="clinic", columns=["patient_id", "kind"],
                    records=[(i, mine[1]) for i in range(500)])
                n = await con.fetchval("SELECT count(*) FROM clinic.events WHERE patient_id < $1", 10)
                assert n >= 0
                await con.execute("DELETE FROM clinic.events WHERE kind = ANY($1::text[]) "
                                  "AND id < (SELECT max(id) - 20000 FROM clinic.events)", mine)
                ok += 1
                await asyncio.sleep(0.1)
            except Exception as e:  # any error here is unexpected: the policy allows all of it
                bad += 1
                first_error = first_error or f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        await con.close()

async def main():
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            await asyncio.gather(*(one_session(deadline, k) for k in range(3)))
        except Exception as e:
            global bad, first_error
            bad += 1
            first_error = first_error or f"{type(e).__name__}: {str(e)[:300]}"
            await asyncio.sleep(0.5)

asyncio.run(main())
with open(os.path.join(scratch, f"client-{name}.count"), "w") as f:
    f.write(f"{name} {ok} {bad}\n")
if first_error:
    with open(os.path.join(scratch, f"client-{name}.err"), "w") as f:
        f.write(first_error + "\n")
PY
}

wants() { [[ " $CLIENTS " == *" $1 "* ]]; }
[[ -n "$python_asyncpg" ]] || CLIENTS=${CLIENTS//asyncpg/}
log "load: ${DURATION}s of: $CLIENTS"
if wants pgbench-prepared; then
  pgbench_client pgbench-prepared -M prepared -c 2 -j 1 -R 30 &
  client_pids+=($!)
fi
if wants pgbench-churn; then
  pgbench_client pgbench-churn -M extended -C -c 2 -j 1 -R "$CHURN_RATE" &
  client_pids+=($!)
fi
if wants psql; then
  for i in 1 2; do
    psql_client "psql-$i" &
    client_pids+=($!)
  done
fi
if wants asyncpg; then
  asyncpg_client asyncpg &
  client_pids+=($!)
fi
((${#client_pids[@]} > 0)) || die "no client to run (CLIENTS='$CLIENTS')"

# --- samples -------------------------------------------------------------------------------------
sample() { # prints: rss_kb anon_kb fds threads store_bytes replay_bytes
  local rss anon fds threads
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$vigil_pid/status" 2>/dev/null || echo 0)
  anon=$(awk '/^RssAnon/ {print $2}' "/proc/$vigil_pid/status" 2>/dev/null || echo 0)
  fds=$(find "/proc/$vigil_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  threads=$(awk '/^Threads/ {print $2}' "/proc/$vigil_pid/status" 2>/dev/null || echo 0)
  python3 - "$data_dir" "$rss" "$anon" "$fds" "$threads" <<'PY'
import os, sys
d, rss, anon, fds, threads = sys.argv[1:]
store = replay = 0
for root, _, files in os.walk(d):
    for f in files:
        try:
            size = os.stat(os.path.join(root, f)).st_size
        except FileNotFoundError:
            continue
        if os.sep + "replay" in root[len(d):]:
            replay += size
        else:
            store += size
print(rss, anon, fds, threads, store, replay)
PY
}
echo "t_s,rss_kb,anon_kb,fds,threads,store_bytes,replay_bytes" >"$OUT/samples.csv"
start=$SECONDS
vigil_died=0
while :; do
  alive=0
  for p in "${client_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  if ! kill -0 "$vigil_pid" 2>/dev/null; then vigil_died=1; break; fi
  read -r rss anon fds threads store replay < <(sample)
  echo "$((SECONDS - start)),$rss,$anon,$fds,$threads,$store,$replay" >>"$OUT/samples.csv"
  ((alive)) || break
  sleep "$INTERVAL"
done
for p in "${client_pids[@]}"; do wait "$p" 2>/dev/null || true; done
client_pids=()
sleep 3 # idle: the last captures closed and compressed
if ((vigil_died == 0)); then
  read -r rss anon fds threads store replay < <(sample)
  echo "$((SECONDS - start)),$rss,$anon,$fds,$threads,$store,$replay" >>"$OUT/samples.csv"
fi
stop_pid "$vigil_pid"
vigil_pid=""
verify_status=0
"$VIGIL_BIN" audit verify --config "$config" >"$scratch/verify.log" 2>&1 || verify_status=$?
cp "$scratch/vigil/vigil.log" "$OUT/vigil.log"

# --- summary -------------------------------------------------------------------------------------
python3 - "$scratch" "$OUT" "$DURATION" "$MAX_SESSION" "$MAX_TOTAL" "$vigil_died" "$verify_status" <<'PY'
import csv, glob, json, os, sqlite3, statistics, sys
scratch, out, duration, max_session, max_total, died, verify = sys.argv[1:]
duration, max_session, max_total, died, verify = map(int, (duration, max_session, max_total, died, verify))
clients = {}
errors = {}
for f in glob.glob(os.path.join(scratch, "client-*.count")):
    name, ok, bad = open(f).read().split()
    clients[name] = {"ok": int(ok), "unexpected": int(bad)}
for f in glob.glob(os.path.join(scratch, "client-*.err")):
    text = open(f).read().strip()
    if text:
        errors[os.path.basename(f)[7:-4]] = text[:400]
samples = [{k: int(v) for k, v in s.items()} for s in csv.DictReader(open(os.path.join(out, "samples.csv")))]
load = samples[:-1] if len(samples) > 10 else samples
fifth = max(1, len(load) // 5)
mib = lambda kb: kb / 1024
second = statistics.median(s["rss_kb"] for s in load[fifth:2 * fifth])
last = statistics.median(s["rss_kb"] for s in load[-fifth:])
peak = max(s["rss_kb"] for s in samples)
# Least-squares slope of RSS over the run after the first fifth (warm-up), in MiB per hour.
xs = [s["t_s"] for s in load[fifth:]]
ys = [mib(s["rss_kb"]) for s in load[fifth:]]
mx, my = statistics.mean(xs), statistics.mean(ys)
den = sum((x - mx) ** 2 for x in xs) or 1
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 3600
# The same for anonymous memory alone (heap): RSS also counts the binary's pages as they are
# first touched, which grows early in a run and is not the gateway's to give back.
ys_anon = [mib(s["anon_kb"]) for s in load[fifth:]]
my_anon = statistics.mean(ys_anon)
slope_anon = sum((x - mx) * (y - my_anon) for x, y in zip(xs, ys_anon)) / den * 3600
anon_second = statistics.median(s["anon_kb"] for s in load[fifth:2 * fifth])
anon_last = statistics.median(s["anon_kb"] for s in load[-fifth:])
rss_flat = last <= 1.15 * second + 8 * 1024
replay_peak = max(s["replay_bytes"] for s in samples)
replay_rest = samples[-1]["replay_bytes"]
store_first, store_last = samples[0]["store_bytes"], samples[-1]["store_bytes"]
fds_peak = max(s["fds"] for s in samples)
threads_peak = max(s["threads"] for s in samples)
live_bound = max_total + 12 * max_session  # open captures may each be up to max_session_bytes
db = sqlite3.connect(os.path.join(scratch, "vigil", "data", "vigil.db"))
types = dict(db.execute("SELECT json_extract(body, '$.type'), count(*) FROM audit_log GROUP BY 1"))
sessions = types.get("SessionEnded", 0)
statements = types.get("StatementStarted", 0)
refused = types.get("PolicyDenied", 0)
masked = types.get("MaskingApplied", 0)
unexpected = sum(c["unexpected"] for c in clients.values())
summary = {
    "duration_s": duration, "clients": clients, "client_errors": errors,
    "sessions_ended": sessions, "statements": statements, "statements_refused": refused,
    "record_types": types,
    "rss_mib": {"second_fifth_median": round(mib(second), 1), "last_fifth_median": round(mib(last), 1),
                "peak": round(mib(peak), 1), "slope_after_warmup_mib_per_hour": round(slope, 1),
                "at_end_idle": round(mib(samples[-1]["rss_kb"]), 1)},
    "anon_mib": {"second_fifth_median": round(mib(anon_second), 1),
                 "last_fifth_median": round(mib(anon_last), 1),
                 "slope_after_warmup_mib_per_hour": round(slope_anon, 1)},
    "rss_flat": rss_flat, "open_files_peak": fds_peak, "threads_peak": threads_peak,
    "replay_bytes": {"peak": replay_peak, "at_rest": replay_rest, "max_total_bytes": max_total,
                     "live_bound": live_bound},
    "replay_within_bounds": replay_rest <= max_total and replay_peak <= live_bound,
    "store_bytes": {"start": store_first, "end": store_last,
                    "per_session": round((store_last - store_first) / sessions) if sessions else None},
    "vigil_died": bool(died), "audit_verify_exit": verify,
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(f"{duration}s, {sessions} sessions, {statements} statements ({refused} refused); clients: "
      + ", ".join(f"{n} {c['ok']} ok/{c['unexpected']} unexpected" for n, c in sorted(clients.items())))
print(f"RSS: {mib(second):.1f} MiB (2nd fifth, median) -> {mib(last):.1f} MiB (last fifth); peak {mib(peak):.1f} MiB; "
      f"slope after warm-up {slope:+.1f} MiB/h; idle at end {mib(samples[-1]['rss_kb']):.1f} MiB; open files peak {fds_peak}; threads peak {threads_peak}")
print(f"heap (RssAnon): {mib(anon_second):.1f} -> {mib(anon_last):.1f} MiB; slope after warm-up {slope_anon:+.1f} MiB/h")
print(f"replay dir: peak {replay_peak / 1048576:.1f} MiB, at rest {replay_rest / 1048576:.1f} MiB "
      f"(max_total_bytes {max_total / 1048576:.0f} MiB)")
print(f"audit store: {store_first / 1048576:.1f} -> {store_last / 1048576:.1f} MiB"
      + (f" ({summary['store_bytes']['per_session']} bytes per session)" if sessions else ""))
for n, e in sorted(errors.items()):
    print(f"first unexpected output of {n}: {e}")
print(f"audit verify: exit {verify}")
ok = (not died and rss_flat and summary["replay_within_bounds"] and unexpected == 0 and verify == 0
      and sessions > 0)
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
