#!/usr/bin/env bash
# pgbench -S (select-only) against PostgreSQL directly, through pgbouncer and through Vigil (full
# recording), interleaved, several rounds; prints TPS, latency, Vigil/direct and Vigil/pgbouncer
# ratios and the proxies' CPU time per transaction. See bench/README.md and docs/BENCHMARKS.md.
#
# Self-contained: builds `vigil` (unless VIGIL_BIN is set), makes a throwaway PostgreSQL 15
# cluster with SCRAM-SHA-256 auth on a free loopback port, a pgbouncer (session mode) and a Vigil
# (default store settings, data_dir in the scratch folder) in front of it, runs
# `pgbench -i -s SCALE` once, then for each round, for each query mode and client count, runs
# direct, pgbouncer, vigil one after the other (interleaved, so that a noisy neighbour hits all
# three alike). Everything it started is stopped and removed on exit.
#
# The cluster runs with fsync=off (a read-only benchmark writes nothing that matters; the
# Vigil store keeps its own default durability settings: SQLite WAL, synchronous=normal).
#
# Options (each also an environment variable):
#   -r, --rounds N        ROUNDS     rounds (default 3)
#   -d, --duration S      DURATION   seconds per pgbench run (default 8)
#   -c, --clients "1 16"  CLIENTS    client counts
#   -m, --modes "..."     MODES      query modes: simple extended prepared (default "simple extended")
#   -t, --targets "..."   TARGETS    direct pgbouncer vigil scoped (default all four). `vigil`
#                                    logs in as an identity whose policy allows everything (every
#                                    statement is still analysed and decided); `scoped` is the same
#                                    gateway under a realistic least-privilege scope (reads of the
#                                    pgbench tables only, a denied column, a row cap, read-only
#                                    upstream): the scoped/vigil ratio is what enforcing a policy
#                                    costs.
#   -j, --jobs N          JOBS       pgbench threads (default: min(clients, nproc))
#   -s, --scale N         SCALE      pgbench scale (default 1)
#   -o, --out DIR         OUT        results folder (default target/bench/pgbench-<UTC timestamp>)
#   -k, --keep            KEEP=1     keep the scratch folder (logs, Vigil store)
#       --warmup S        WARMUP     seconds of unrecorded warm-up per target before round 1 (default 2)
#   VIGIL_BIN       vigil binary (default: cargo build --release -p vigil; CARGO_TARGET_DIR honoured)
#   PG_BIN          PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   PGBOUNCER_BIN   pgbouncer (default: from PATH; installed with apt-get if missing and root)
#
# Output: a table on stdout, and in OUT: runs.csv (every run), summary.csv and summary.json
# (medians, ratios, CPU per transaction), env.txt (machine, load, versions).
#
# CPU per transaction: utime+stime of the proxy process (/proc/PID/stat, all threads) over the
# run, divided by the transactions pgbench reports. For Vigil it is also split by thread name
# (tokio workers "vigil", the audit writer "vigil-audit", the WAL checkpointer
# "vigil-store-wal"). It is steadier than TPS on a shared machine. Resolution: one clock tick
# (10 ms) per run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-"1 16"}
MODES=${MODES:-"simple extended"}
TARGETS=${TARGETS:-"direct pgbouncer vigil scoped"}
JOBS=${JOBS:-}
SCALE=${SCALE:-1}
OUT=${OUT:-}
KEEP=${KEEP:-0}
WARMUP=${WARMUP:-2}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf 'pgbench.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -r | --rounds) ROUNDS=$2; shift 2 ;;
    -d | --duration) DURATION=$2; shift 2 ;;
    -c | --clients) CLIENTS=$2; shift 2 ;;
    -m | --modes) MODES=$2; shift 2 ;;
    -t | --targets) TARGETS=$2; shift 2 ;;
    -j | --jobs) JOBS=$2; shift 2 ;;
    -s | --scale) SCALE=$2; shift 2 ;;
    -o | --out) OUT=$2; shift 2 ;;
    -k | --keep) KEEP=1; shift ;;
    --warmup) WARMUP=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

for v in ROUNDS DURATION SCALE WARMUP; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
[[ $ROUNDS -ge 1 && $DURATION -ge 1 ]] || die "ROUNDS and DURATION must be at least 1"
for m in $MODES; do
  [[ $m =~ ^(simple|extended|prepared)$ ]] || die "unknown mode '$m' (simple, extended, prepared)"
done
for t in $TARGETS; do
  [[ $t =~ ^(direct|pgbouncer|vigil|scoped)$ ]] || die "unknown target '$t' (direct, pgbouncer, vigil, scoped)"
done
for c in $CLIENTS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "bad client count '$c'"; done
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

# --- prerequisites ------------------------------------------------------------------------
command -v pgbench >/dev/null || die "pgbench not found (Debian: apt-get install postgresql-client-15)"
command -v psql >/dev/null || die "psql not found (Debian: apt-get install postgresql-client-15)"
command -v python3 >/dev/null || die "python3 not found (used to summarise the results)"
for b in initdb pg_ctl postgres; do
  [[ -x "$PG_BIN/$b" ]] || die "no PostgreSQL server binary $PG_BIN/$b (set PG_BIN; Debian: apt-get install postgresql-15)"
done
is_root() { [[ $(id -u) -eq 0 ]]; }
if is_root; then
  id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL and pgbouncer as"
  command -v runuser >/dev/null || die "runuser not found (util-linux)"
fi
as_service_user() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

if has_target pgbouncer; then
  PGBOUNCER_BIN=${PGBOUNCER_BIN:-$(command -v pgbouncer || true)}
  if [[ -z "$PGBOUNCER_BIN" && -x /usr/sbin/pgbouncer ]]; then PGBOUNCER_BIN=/usr/sbin/pgbouncer; fi
  if [[ -z "$PGBOUNCER_BIN" ]]; then
    is_root || die "pgbouncer not found; install it (apt-get install pgbouncer) or drop it from TARGETS"
    log "pgbouncer not found: installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; } ||
      die "apt-get install pgbouncer failed"
    # The Debian package starts a system pgbouncer on 6432; ours uses its own port and config.
    PGBOUNCER_BIN=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  fi
  [[ -x "$PGBOUNCER_BIN" ]] || die "no pgbouncer binary at $PGBOUNCER_BIN"
fi

if has_target vigil || has_target scoped; then
  if [[ -z "${VIGIL_BIN:-}" ]]; then
    command -v cargo >/dev/null || die "cargo not found: set VIGIL_BIN to a vigil binary"
    log "building vigil (cargo build --release -p vigil)"
    (cd "$ROOT" && cargo build --release -p vigil --quiet) || die "cargo build failed"
    target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    VIGIL_BIN="$target_dir/release/vigil"
  fi
  [[ -x "$VIGIL_BIN" ]] || die "no vigil binary at $VIGIL_BIN"
fi

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

# --- scratch folder, results and cleanup ---------------------------------------------------
OUT=${OUT:-$ROOT/target/bench/pgbench-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/vigil-pgbench.XXXXXX")
chmod 0711 "$scratch"
pgdata="$scratch/pg/data"
pg_started=""
bouncer_pid=""
vigil_pid=""

stop_pid() { # pid: TERM, wait up to 5 s, KILL
  local pid=$1
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  stop_pid "$vigil_pid"
  [[ -n "$vigil_pid" ]] && wait "$vigil_pid" 2>/dev/null
  stop_pid "$bouncer_pid"
  if [[ -n "$pg_started" ]]; then
    as_service_user "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
  fi
  if [[ "$KEEP" == "1" ]]; then
    log "scratch folder kept: $scratch"
  else
    rm -rf "$scratch"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
wait_port() { # port pid what
  for _ in $(seq 300); do
    if [[ -n "$2" ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# --- PostgreSQL 15, SCRAM-SHA-256 -----------------------------------------------------------
pg_port=$(free_port)
upstream_password=$(secret)
mkdir -p "$scratch/pg"
(umask 077 && printf '%s' "$upstream_password" >"$scratch/pg/pw")
is_root && chown -R postgres:postgres "$scratch/pg"
log "initdb (SCRAM-SHA-256) in $pgdata"
as_service_user "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=scram-sha-256 -E UTF8 \
  --locale=C.UTF-8 --pwfile="$scratch/pg/pw" >"$scratch/pg/initdb.log" 2>&1 ||
  { cat "$scratch/pg/initdb.log" >&2; die "initdb failed"; }
rm -f "$scratch/pg/pw"
pg_opts="-p $pg_port -k $scratch/pg -c listen_addresses=127.0.0.1 -c max_connections=200"
pg_opts+=" -c fsync=off -c shared_buffers=128MB"
as_service_user "$PG_BIN/pg_ctl" -D "$pgdata" -o "$pg_opts" -w -t 60 -l "$scratch/pg/server.log" \
  start >/dev/null || { cat "$scratch/pg/server.log" >&2; die "PostgreSQL did not start"; }
pg_started=1

psql_direct() {
  PGPASSWORD="$upstream_password" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
    -U postgres "$@"
}
psql_direct -d postgres -c "CREATE DATABASE bench" >/dev/null
log "pgbench -i -s $SCALE (directly)"
PGPASSWORD="$upstream_password" PGSSLMODE=disable pgbench -i -q -s "$SCALE" -h 127.0.0.1 \
  -p "$pg_port" -U postgres bench >"$scratch/pg/pgbench-init.log" 2>&1 ||
  { cat "$scratch/pg/pgbench-init.log" >&2; die "pgbench -i failed"; }

# --- pgbouncer (session mode; clients auth with plain passwords, SCRAM to the server) -------
bouncer_port=""
if has_target pgbouncer; then
  bouncer_port=$(free_port)
  mkdir -p "$scratch/pgbouncer"
  (umask 077 && printf '"postgres" "%s"\n' "$upstream_password" >"$scratch/pgbouncer/userlist.txt")
  cat >"$scratch/pgbouncer/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = plain
auth_file = $scratch/pgbouncer/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 100
max_db_connections = 150
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
pidfile = $scratch/pgbouncer/pgbouncer.pid
logfile = $scratch/pgbouncer/pgbouncer.log
EOF
  is_root && chown -R postgres:postgres "$scratch/pgbouncer"
  as_service_user "$PGBOUNCER_BIN" -d "$scratch/pgbouncer/pgbouncer.ini" \
    >"$scratch/pgbouncer/stdout.log" 2>&1 ||
    { cat "$scratch/pgbouncer/stdout.log" "$scratch/pgbouncer/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }
  for _ in $(seq 100); do [[ -s "$scratch/pgbouncer/pgbouncer.pid" ]] && break; sleep 0.1; done
  bouncer_pid=$(cat "$scratch/pgbouncer/pgbouncer.pid" 2>/dev/null || true)
  [[ -n "$bouncer_pid" ]] || die "pgbouncer wrote no pid file"
  wait_port "$bouncer_port" "$bouncer_pid" ||
    { cat "$scratch/pgbouncer/pgbouncer.log" >&2; die "pgbouncer is not listening"; }
fi

# --- Vigil (full recording, default store settings) ----------------------------------------
vigil_port=""
vigil_token=""
if has_target vigil || has_target scoped; then
  vigil_port=$(free_port)
  mkdir -p "$scratch/vigil"
  config="$scratch/vigil/vigil.toml"
  cat >"$config" <<EOF
data_dir = "data"

[[listeners]]
protocol = "postgres"
address = "127.0.0.1:$vigil_port"

[[connections]]
name = "bench"
protocol = "postgres"
host = "127.0.0.1"
port = $pg_port
database = "bench"
user = "postgres"
password = "env:VIGIL_BENCH_UPSTREAM_PASSWORD"
tls = "disable"

[[identities]]
name = "pgbench"
kind = "machine"
connections = ["bench"]

[[policies]]
name = "pgbench"
identities = ["pgbench"]
connections = ["bench"]
[policies.scope]
commands = ["read", "write", "ddl", "copy_in", "copy_out", "transaction", "session", "function", "utility"]
relations = ["*"]
functions = ["*"]

[[identities]]
name = "pgbench-scoped"
kind = "machine"
connections = ["bench"]

# A realistic least-privilege scope: what a reporting job reading the pgbench tables gets.
[[policies]]
name = "pgbench-reader"
identities = ["pgbench-scoped"]
connections = ["bench"]
[policies.scope]
commands = ["read", "transaction", "session"]
relations = ["public.pgbench_*"]
deny_relations = ["public.pgbench_history"]
deny_columns = { "public.pgbench_accounts" = ["filler"], "public.pgbench_tellers" = ["filler"] }
row_cap = 1000
read_only = true
max_session = "8h"
EOF
  export VIGIL_BENCH_UPSTREAM_PASSWORD="$upstream_password"
  vigil_token=$("$VIGIL_BIN" token create --identity pgbench --config "$config" \
    2>"$scratch/vigil/token.log") || { cat "$scratch/vigil/token.log" >&2; die "vigil token create failed"; }
  [[ -n "$vigil_token" ]] || die "vigil token create printed no token"
  scoped_token=$("$VIGIL_BIN" token create --identity pgbench-scoped --config "$config" \
    2>>"$scratch/vigil/token.log") || { cat "$scratch/vigil/token.log" >&2; die "vigil token create failed"; }
  RUST_LOG=${RUST_LOG:-warn} "$VIGIL_BIN" serve --config "$config" >"$scratch/vigil/vigil.log" 2>&1 &
  vigil_pid=$!
  wait_port "$vigil_port" "$vigil_pid" || { cat "$scratch/vigil/vigil.log" >&2; die "vigil did not start"; }
fi

# --- running ---------------------------------------------------------------------------------
target_conn() { # target -> "port user password pid"
  case $1 in
    direct) echo "$pg_port postgres $upstream_password -" ;;
    pgbouncer) echo "$bouncer_port postgres $upstream_password $bouncer_pid" ;;
    vigil) echo "$vigil_port pgbench $vigil_token $vigil_pid" ;;
    scoped) echo "$vigil_port pgbench-scoped $scoped_token $vigil_pid" ;;
  esac
}

proc_ticks() { # pid -> utime+stime of the whole process, in clock ticks
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo $((${12} + ${13}))
}

thread_ticks() { # pid -> "comm=ticks,comm=ticks" summed by thread name
  local pid=$1 t line comm rest
  declare -A by=()
  for t in /proc/"$pid"/task/*; do
    line=$(cat "$t/stat" 2>/dev/null) || continue
    comm=${line#*(}; comm=${comm%)*}; comm=${comm// /_}
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    by[$comm]=$((${by[$comm]:-0} + ${12} + ${13}))
  done
  local out=""
  for comm in "${!by[@]}"; do out+="${out:+;}$comm=${by[$comm]}"; done
  echo "$out"
}

proc_ctxsw() { # pid -> context switches (voluntary + involuntary) of all its threads so far
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {n += $2} END {print n + 0}'
}

machine_ticks() { # -> "busy steal total" from /proc/stat
  local cpu user nice system idle iowait irq softirq steal rest
  read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system + irq + softirq)) $steal $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

jobs_for() { # clients -> pgbench -j
  if [[ -n "$JOBS" ]]; then echo $((JOBS < $1 ? JOBS : $1)); else echo $((NPROC < $1 ? NPROC : $1)); fi
}

pgbench_run() { # target mode clients seconds logfile
  local port user password pid
  read -r port user password pid <<<"$(target_conn "$1")"
  PGPASSWORD="$password" PGSSLMODE=disable PGAPPNAME=vigil-bench \
    pgbench -n -S -M "$2" -c "$3" -j "$(jobs_for "$3")" -T "$4" -h 127.0.0.1 -p "$port" \
    -U "$user" bench >"$5" 2>&1
}

runs_csv="$OUT/runs.csv"
echo "round,mode,clients,target,tps,latency_ms,transactions,failed,proxy_cpu_ticks,proxy_cpu_us_per_txn,proxy_ctxsw_per_txn,threads,machine_busy_pct,machine_steal_pct,loadavg1" >"$runs_csv"
mkdir -p "$OUT/logs"

{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "host: $(uname -srm), $NPROC CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "uptime_before: $(uptime)"
  echo "pgbench: $(pgbench --version)"
  echo "postgres: $("$PG_BIN/postgres" --version)"
  has_target pgbouncer && echo "pgbouncer: $("$PGBOUNCER_BIN" --version 2>&1 | head -1)"
  { has_target vigil || has_target scoped; } && echo "vigil: $VIGIL_BIN ($("$VIGIL_BIN" --version 2>/dev/null || echo unknown version))"
  echo "settings: rounds=$ROUNDS duration=${DURATION}s clients='$CLIENTS' modes='$MODES' targets='$TARGETS' jobs=${JOBS:-auto} scale=$SCALE"
  echo "postgres_opts: $pg_opts"
  echo "top_before:"
  ps -eo pcpu,pid,user,comm --sort=-pcpu | head -8 | sed 's/^/  /'
} >"$OUT/env.txt"
log "results in $OUT"
log "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $WARMUP -gt 0 ]]; then
  for target in $TARGETS; do
    for mode in $MODES; do
      pgbench_run "$target" "$mode" 4 "$WARMUP" "$OUT/logs/warmup-$target-$mode.log" ||
        { cat "$OUT/logs/warmup-$target-$mode.log" >&2; die "warm-up against $target ($mode) failed"; }
    done
  done
fi

total=$((ROUNDS * $(wc -w <<<"$MODES") * $(wc -w <<<"$CLIENTS") * $(wc -w <<<"$TARGETS")))
n=0
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    for clients in $CLIENTS; do
      for target in $TARGETS; do
        n=$((n + 1))
        read -r _ _ _ pid <<<"$(target_conn "$target")"
        logf="$OUT/logs/r$round-$mode-c$clients-$target.log"
        before=0; threads_before=""; ctxsw_before=0
        if [[ "$pid" != "-" ]]; then
          kill -0 "$pid" 2>/dev/null || die "$target (pid $pid) is no longer running"
          before=$(proc_ticks "$pid")
          ctxsw_before=$(proc_ctxsw "$pid")
          [[ $target == vigil || $target == scoped ]] && threads_before=$(thread_ticks "$pid")
        fi
        read -r m_busy0 m_steal0 m_total0 <<<"$(machine_ticks)"
        pgbench_run "$target" "$mode" "$clients" "$DURATION" "$logf" ||
          { cat "$logf" >&2; die "pgbench against $target ($mode, $clients clients) failed"; }
        read -r m_busy1 m_steal1 m_total1 <<<"$(machine_ticks)"
        ticks=""; threads=""; ctxsw=""
        if [[ "$pid" != "-" ]]; then
          ticks=$(($(proc_ticks "$pid") - before))
          ctxsw=$(($(proc_ctxsw "$pid") - ctxsw_before))
          if [[ $target == vigil || $target == scoped ]]; then
            threads="$threads_before|$(thread_ticks "$pid")"
          fi
        fi
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$logf" | tail -1)
        lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$logf")
        txn=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$logf")
        failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$logf")
        [[ -n "$tps" && -n "$txn" ]] || { cat "$logf" >&2; die "cannot read pgbench's report in $logf"; }
        cpu_us=""; ctxsw_txn=""
        if [[ -n "$ticks" && "$txn" -gt 0 ]]; then
          cpu_us=$(python3 -c "print(f'{$ticks / $CLK_TCK / $txn * 1e6:.2f}')")
          ctxsw_txn=$(python3 -c "print(f'{$ctxsw / $txn:.3f}')")
        fi
        d_total=$((m_total1 - m_total0)); [[ $d_total -gt 0 ]] || d_total=1
        busy=$(((m_busy1 - m_busy0) * 1000 / d_total)); steal=$(((m_steal1 - m_steal0) * 1000 / d_total))
        busy="$((busy / 10)).$((busy % 10))"; steal="$((steal / 10)).$((steal % 10))"
        load1=$(cut -d' ' -f1 /proc/loadavg)
        echo "$round,$mode,$clients,$target,$tps,$lat,$txn,${failed:-0},$ticks,$cpu_us,$ctxsw_txn,$threads,$busy,$steal,$load1" >>"$runs_csv"
        printf 'pgbench.sh: [%d/%d] round %d %-8s c=%-3s %-9s %9.0f tps  %7s ms  cpu/txn %6s us  machine busy %s%%\n' \
          "$n" "$total" "$round" "$mode" "$clients" "$target" "$tps" "$lat" "${cpu_us:--}" "$busy" >&2
      done
    done
  done
done
load_before=$(sed -n 's/^uptime_before: .*load average: //p' "$OUT/env.txt")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "uptime_after: $(uptime)" >>"$OUT/env.txt"
if has_target vigil || has_target scoped; then
  {
    echo "vigil_store: $(du -sh "$scratch/vigil/data" | cut -f1) in data_dir after the run"
    echo "vigil_rss_kb: $(awk '/VmRSS/ {print $2}' "/proc/$vigil_pid/status")"
  } >>"$OUT/env.txt"
fi

# --- summary -----------------------------------------------------------------------------------
python3 - "$OUT" "$CLK_TCK" <<'EOF'
import csv, json, statistics, sys
out, clk = sys.argv[1], int(sys.argv[2])
runs = list(csv.DictReader(open(f"{out}/runs.csv")))
med = statistics.median

def f(v):
    return float(v) if v not in ("", None) else None

groups = {}
for r in runs:
    groups.setdefault((r["mode"], int(r["clients"])), {}).setdefault(r["target"], []).append(r)

summary = []
for (mode, clients), by_target in groups.items():
    row = {"mode": mode, "clients": clients, "targets": {}}
    for target, rs in by_target.items():
        tps = [f(r["tps"]) for r in rs]
        t = {
            "runs": len(rs),
            "tps_median": med(tps),
            "tps_runs": tps,
            "latency_ms_median": med([f(r["latency_ms"]) for r in rs]),
            "transactions": sum(int(r["transactions"]) for r in rs),
            "failed": sum(int(r["failed"] or 0) for r in rs),
            "machine_busy_pct_median": med([f(r["machine_busy_pct"]) for r in rs]),
            "machine_steal_pct_median": med([f(r["machine_steal_pct"]) for r in rs]),
        }
        cpu = [f(r["proxy_cpu_us_per_txn"]) for r in rs if r["proxy_cpu_us_per_txn"]]
        if cpu:
            t["proxy_cpu_us_per_txn_median"] = med(cpu)
            t["proxy_cpu_us_per_txn_runs"] = cpu
            # Pooled: all ticks over all transactions (less affected by tick rounding).
            ticks = sum(int(r["proxy_cpu_ticks"]) for r in rs)
            t["proxy_cpu_us_per_txn_pooled"] = ticks / clk / t["transactions"] * 1e6
        cs = [f(r["proxy_ctxsw_per_txn"]) for r in rs if r["proxy_ctxsw_per_txn"]]
        if cs:
            t["proxy_ctxsw_per_txn_median"] = med(cs)
        threads = {}
        for r in rs:
            if not r["threads"]:
                continue
            before, after = (dict(kv.split("=") for kv in part.split(";") if kv)
                             for part in r["threads"].split("|"))
            for name, v in after.items():
                threads[name] = threads.get(name, 0) + int(v) - int(before.get(name, 0))
        if threads:
            t["threads_cpu_us_per_txn_pooled"] = {
                k: v / clk / t["transactions"] * 1e6 for k, v in sorted(threads.items()) if v > 0}
        row["targets"][target] = t
    ts = row["targets"]

    def paired(a, b):
        ra = {x["round"]: f(x["tps"]) for x in by_target.get(a, [])}
        rb = {x["round"]: f(x["tps"]) for x in by_target.get(b, [])}
        both = [ra[k] / rb[k] for k in ra if k in rb and rb[k]]
        return med(both) if both else None

    for name, (a, b) in (("vigil_over_direct", ("vigil", "direct")),
                         ("vigil_over_pgbouncer", ("vigil", "pgbouncer")),
                         ("pgbouncer_over_direct", ("pgbouncer", "direct")),
                         ("scoped_over_vigil", ("scoped", "vigil"))):
        if a in ts and b in ts:
            row[name] = {"of_medians": ts[a]["tps_median"] / ts[b]["tps_median"],
                         "median_of_paired_rounds": paired(a, b)}
    summary.append(row)

json.dump({"runs": len(runs), "summary": summary}, open(f"{out}/summary.json", "w"), indent=2)

cols = ["mode", "clients", "target", "tps_median", "tps_min", "tps_max", "latency_ms_median",
        "proxy_cpu_us_per_txn", "proxy_ctxsw_per_txn", "vigil_over_direct", "vigil_over_pgbouncer"]
with open(f"{out}/summary.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(cols)
    for row in summary:
        for target, t in row["targets"].items():
            w.writerow([row["mode"], row["clients"], target, f'{t["tps_median"]:.0f}',
                        f'{min(t["tps_runs"]):.0f}', f'{max(t["tps_runs"]):.0f}',
                        f'{t["latency_ms_median"]:.3f}',
                        f'{t["proxy_cpu_us_per_txn_pooled"]:.2f}' if "proxy_cpu_us_per_txn_pooled" in t else "",
                        f'{t["proxy_ctxsw_per_txn_median"]:.3f}' if "proxy_ctxsw_per_txn_median" in t else "",
                        f'{row["vigil_over_direct"]["of_medians"]:.3f}' if target == "vigil" and "vigil_over_direct" in row else "",
                        f'{row["vigil_over_pgbouncer"]["of_medians"]:.3f}' if target == "vigil" and "vigil_over_pgbouncer" in row else ""])

def fmt(v, spec):
    return format(v, spec) if v is not None else "-"

print()
print(f"pgbench -S, medians of {max(t['runs'] for r in summary for t in r['targets'].values())} interleaved runs"
      " (TPS min-max in brackets; CPU/txn = proxy process utime+stime per transaction, pooled)")
print()
hdr = f"{'mode':<9} {'cl':>3}  {'target':<9} {'TPS':>8} {'(min-max)':>15} {'lat ms':>7} {'CPU/txn us':>10} {'cs/txn':>6}   {'V/direct':>8} {'V/pgb':>6}"
print(hdr)
print("-" * len(hdr))
for row in summary:
    first = True
    for target in ("direct", "pgbouncer", "vigil", "scoped"):
        t = row["targets"].get(target)
        if not t:
            continue
        rng = f"({min(t['tps_runs']):.0f}-{max(t['tps_runs']):.0f})"
        cpu = fmt(t.get("proxy_cpu_us_per_txn_pooled"), ".1f")
        cs = fmt(t.get("proxy_ctxsw_per_txn_median"), ".2f")
        vd = vb = ""
        if target == "vigil":
            vd = fmt(row.get("vigil_over_direct", {}).get("of_medians"), ".2f")
            vb = fmt(row.get("vigil_over_pgbouncer", {}).get("of_medians"), ".2f")
        if target == "scoped":
            vd = "S/V"
            vb = fmt(row.get("scoped_over_vigil", {}).get("median_of_paired_rounds"), ".3f")
        print(f"{row['mode'] if first else '':<9} {row['clients'] if first else '':>3}  {target:<9} "
              f"{t['tps_median']:>8.0f} {rng:>15} {t['latency_ms_median']:>7.3f} {cpu:>10} {cs:>6}   {vd:>8} {vb:>6}")
        first = False
    th = row["targets"].get("vigil", {}).get("threads_cpu_us_per_txn_pooled")
    if th:
        print(f"{'':<14}vigil CPU/txn by thread: " + ", ".join(f"{k} {v:.1f}" for k, v in th.items()))
print()
print("S/V: the scoped run's TPS over the allow-everything run's (median of per-round paired ratios): the cost")
print("of enforcing a realistic least-privilege scope.")
print("V/direct, V/pgb: Vigil's median TPS over direct's and pgbouncer's (median of per-round paired ratios in")
print("summary.json). cs/txn: the proxy's context switches per transaction (all threads, /proc/PID/task/*/status).")
EOF
echo "machine: $NPROC CPUs; load average before: $load_before; after: $load_after (see runs.csv for busy/steal % per run)"
log "done: $OUT/summary.json, $OUT/summary.csv, $OUT/runs.csv, $OUT/env.txt"
