#!/usr/bin/env bash
# Replay capture soak: many sessions with large results through Vigil for a while, the replay
# directory's size sampled all along; reports whether disk use stayed within the configured
# bounds, what was rotated out and truncated, the compression ratio, and that no client literal
# rests in any capture. See bench/README.md and docs/REPLAY.md ("Bounded disk use").
#
# Self-contained: builds `vigil` (unless VIGIL_BIN is set), makes a throwaway PostgreSQL 15
# cluster (SCRAM-SHA-256, free loopback port) and a Vigil in front of it with the [replay]
# bounds given, runs CLIENTS psql loops for DURATION seconds (each session: a read of ROWS rows
# of random digests, filtered by a literal canary; every 5th session also goes past
# max_session_bytes), samples the replay directory every 0.2 s, then reads the audit store.
# Everything it started is stopped and removed on exit.
#
# Options (each also an environment variable):
#   -d, --duration S            DURATION        seconds of load (default 120)
#   -c, --clients N             CLIENTS         concurrent psql loops (default 4)
#   -r, --rows N                ROWS            rows per session (default 20000, about 1.9 MB of capture)
#   -s, --max-session-bytes B   MAX_SESSION     [replay] max_session_bytes (default 4194304)
#   -t, --max-total-bytes B     MAX_TOTAL       [replay] max_total_bytes (default 67108864)
#   -o, --out DIR               OUT             results folder (default target/bench/replay-soak-<UTC timestamp>)
#   -k, --keep                  KEEP=1          keep the scratch folder
#   VIGIL_BIN  vigil binary (default: cargo build --release -p vigil; CARGO_TARGET_DIR honoured)
#   PG_BIN     PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#
# Output: a summary on stdout; in OUT: samples.csv (time, bytes on disk, files), summary.json.
# Exit 1 if the directory at rest passed max_total_bytes, a sample passed
# max_total_bytes + (CLIENTS + 1) x max_session_bytes, or a canary was found in a capture.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-120}
CLIENTS=${CLIENTS:-4}
ROWS=${ROWS:-20000}
MAX_SESSION=${MAX_SESSION:-4194304}
MAX_TOTAL=${MAX_TOTAL:-67108864}
OUT=${OUT:-}
KEEP=${KEEP:-0}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CANARY="Soak-Canary-$RANDOM$RANDOM"

log() { printf 'replay-soak.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -d | --duration) DURATION=$2; shift 2 ;;
    -c | --clients) CLIENTS=$2; shift 2 ;;
    -r | --rows) ROWS=$2; shift 2 ;;
    -s | --max-session-bytes) MAX_SESSION=$2; shift 2 ;;
    -t | --max-total-bytes) MAX_TOTAL=$2; shift 2 ;;
    -o | --out) OUT=$2; shift 2 ;;
    -k | --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for v in DURATION CLIENTS ROWS MAX_SESSION MAX_TOTAL; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number (got '${!v}')"
done

command -v psql >/dev/null || die "psql not found (Debian: apt-get install postgresql-client-15)"
command -v python3 >/dev/null || die "python3 not found"
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

OUT=${OUT:-$ROOT/target/bench/replay-soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vigil-replay-soak.XXXXXX")
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
  for p in "${client_pids[@]}"; do stop_pid "$p"; done
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

# --- PostgreSQL 15 ---------------------------------------------------------------------------
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
  -o "-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c fsync=off" \
  -w -t 60 -l "$scratch/pg/server.log" start >/dev/null ||
  { cat "$scratch/pg/server.log" >&2; die "PostgreSQL did not start"; }
pg_started=1

# --- Vigil -------------------------------------------------------------------------------------
vigil_port=$(free_port)
mkdir -p "$scratch/vigil"
config="$scratch/vigil/vigil.toml"
cat >"$config" <<EOF
data_dir = "data"

[replay]
max_session_bytes = $MAX_SESSION
max_total_bytes = $MAX_TOTAL
compress = true

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
name = "soak"
kind = "machine"
connections = ["soak"]

[[policies]]
name = "soak"
identities = ["soak"]
connections = ["soak"]
[policies.scope]
commands = ["read", "session", "transaction"]
relations = ["*"]
functions = ["*"]
EOF
export VIGIL_SOAK_UPSTREAM_PASSWORD="$upstream_password"
token=$("$VIGIL_BIN" token create --identity soak --config "$config" 2>"$scratch/vigil/token.log") ||
  { cat "$scratch/vigil/token.log" >&2; die "vigil token create failed"; }
RUST_LOG=${RUST_LOG:-warn} "$VIGIL_BIN" serve --config "$config" >"$scratch/vigil/vigil.log" 2>&1 &
vigil_pid=$!
wait_port "$vigil_port" "$vigil_pid" || { cat "$scratch/vigil/vigil.log" >&2; die "vigil did not start"; }
replay_dir="$scratch/vigil/data/replay"

# --- load --------------------------------------------------------------------------------------
client() { # id: sessions until the deadline; prints "ok refused" counts at the end
  local id=$1 ok=0 refused=0 n=0 rows
  local deadline=$((SECONDS + DURATION))
  while ((SECONDS < deadline)); do
    n=$((n + 1))
    rows=$ROWS
    ((n % 5 == 0)) && rows=$((ROWS * 3)) # past the per-session cap
    if PGPASSWORD="$token" PGSSLMODE=disable psql -X -q -A -t -h 127.0.0.1 -p "$vigil_port" \
      -U soak -d soak -c "SELECT md5(random()::text || i::text) AS d, '$CANARY' AS tag FROM generate_series(1, $rows) i WHERE '$CANARY' <> 'x$id-$n'" \
      >/dev/null 2>>"$scratch/client-$id.err"; then
      ok=$((ok + 1))
    else
      refused=$((refused + 1))
    fi
  done
  echo "$ok $refused" >"$scratch/client-$id.count"
}

log "load: $CLIENTS clients for ${DURATION}s, $ROWS rows a session; max_session_bytes=$MAX_SESSION max_total_bytes=$MAX_TOTAL"
for i in $(seq "$CLIENTS"); do
  client "$i" &
  client_pids+=($!)
done

sample() { # elapsed bytes files
  python3 - "$replay_dir" <<'PY'
import os, sys
d = sys.argv[1]
total = files = 0
try:
    for e in os.scandir(d):
        try:
            total += e.stat().st_size
            files += 1
        except FileNotFoundError:
            pass
except FileNotFoundError:
    pass
print(total, files)
PY
}
echo "t_s,bytes,files" >"$OUT/samples.csv"
start=$EPOCHREALTIME
elapsed() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
while :; do
  alive=0
  for p in "${client_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  read -r bytes files < <(sample)
  echo "$(elapsed),$bytes,$files" >>"$OUT/samples.csv"
  ((alive)) || break
  sleep 0.2
done
for p in "${client_pids[@]}"; do wait "$p" 2>/dev/null || true; done
client_pids=()
sleep 2 # the last captures closed and compressed
read -r rest_bytes rest_files < <(sample)
echo "$(elapsed),$rest_bytes,$rest_files" >>"$OUT/samples.csv"
stop_pid "$vigil_pid"
vigil_pid=""

# --- what the store and the directory say ------------------------------------------------------
python3 - "$scratch" "$OUT" "$CLIENTS" "$MAX_SESSION" "$MAX_TOTAL" "$CANARY" "$DURATION" "$ROWS" <<'PY'
import csv, glob, gzip, json, os, sqlite3, sys
scratch, out, clients, max_session, max_total, canary, duration, rows = sys.argv[1:]
clients, max_session, max_total = int(clients), int(max_session), int(max_total)
ok = refused = 0
for f in glob.glob(os.path.join(scratch, "client-*.count")):
    a, b = open(f).read().split()
    ok += int(a); refused += int(b)
samples = list(csv.DictReader(open(os.path.join(out, "samples.csv"))))
peak = max(int(s["bytes"]) for s in samples)
rest = int(samples[-1]["bytes"])
db = sqlite3.connect(os.path.join(scratch, "vigil", "data", "vigil.db"))
bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM audit_log ORDER BY seq")]
ended = [b for b in bodies if b["type"] == "SessionEnded"]
truncated = {}
for e in ended:
    t = e.get("replay_truncated")
    if t:
        truncated[t["reason"]] = truncated.get(t["reason"], 0) + 1
rotations = [b for b in bodies if b["type"] == "ReplayCapturesRotated"]
rotated = sum(len(r["captures"]) for r in rotations)
to_client = sum(e["bytes_to_client"] for e in ended)
replay = os.path.join(scratch, "vigil", "data", "replay")
content = stored = found = 0
files = sorted(os.listdir(replay))
for name in files:
    path = os.path.join(replay, name)
    raw = open(path, "rb").read()
    data = gzip.decompress(raw) if name.endswith(".gz") else raw
    stored += len(raw); content += len(data)
    if canary.encode() in raw or canary.encode() in data:
        found += 1
bound_live = max_total + (clients + 1) * max_session
summary = {
    "duration_s": int(duration), "clients": clients, "rows_per_session": int(rows),
    "max_session_bytes": max_session, "max_total_bytes": max_total,
    "sessions_ok": ok, "sessions_refused": refused, "sessions_ended": len(ended),
    "bytes_to_clients": to_client,
    "replay_dir_peak_bytes": peak, "replay_dir_at_rest_bytes": rest,
    "captures_at_rest": len(files), "rotation_records": len(rotations), "captures_rotated": rotated,
    "captures_truncated": truncated,
    "compression_ratio": round(content / stored, 2) if stored else None,
    "captures_with_canary": found,
    "within_bound_at_rest": rest <= max_total, "within_live_bound": peak <= bound_live,
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
mib = lambda b: f"{b / 1048576:.1f} MiB"
print(f"{ok} sessions ({refused} refused) in {duration}s by {clients} clients; {mib(to_client)} sent to clients")
print(f"replay dir: peak {mib(peak)}, at rest {mib(rest)} in {len(files)} captures; bound {mib(max_total)} "
      f"(live allowance {mib(bound_live)})")
print(f"rotated out: {rotated} captures in {len(rotations)} records; truncated: {truncated or 'none'}")
print(f"compression: {summary['compression_ratio']}x (content {mib(content)} stored as {mib(stored)})")
print(f"captures holding the client literal: {found}")
ok_all = summary["within_bound_at_rest"] and summary["within_live_bound"] and found == 0
print("PASS" if ok_all else "FAIL")
sys.exit(0 if ok_all else 1)
PY
