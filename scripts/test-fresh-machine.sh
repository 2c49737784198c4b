#!/usr/bin/env bash
# The set-up test of README.md's two commands: on a fresh Debian 12 made with debootstrap
# (minbase: no compiler, no PostgreSQL, no Python, no Node.js), with only the Rust toolchain
# copied in, from a clean clone of the current commit:
#
#   a. a user who cannot install (not root, no sudo) runs scripts/demo.sh and scripts/test.sh:
#      each stops before building with one message naming the packages; then the same once
#      sudo is there but asks for a password (no terminal); root with VIGIL_INSTALL=never too;
#   b. root runs scripts/demo.sh: it installs what the demo needs, builds, prints the connect
#      line; psql runs a query through it (that very line); the demo stops on SIGINT; a second
#      run installs nothing and starts again;
#   c. a user with passwordless sudo runs scripts/test.sh (--tests-as root: root does): it
#      installs the rest through sudo and runs every test to the summary.
#
# Not part of the test suite: it takes a while (see README.md for figures) and needs root on
# the host (debootstrap, chroot, mounts). The chroot shares the host's network; nothing in it
# is started as a service. Figures and logs go to WORK (default /work/chroot/fresh).
#
# Usage: scripts/test-fresh-machine.sh [--work DIR] [--keep] [--no-tests] [--tests-as root|sudoer]
#                                      [--nextest] [--mirror URL]
#   --keep      keep the chroot afterwards (it is unmounted either way)
#   --no-tests  stop after b (the demo)
#   --nextest   copy the host's cargo-nextest in (by default the chroot has none: cargo test)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=/work/chroot/fresh
KEEP=0
RUN_TESTS=1
TESTS_AS=sudoer
NEXTEST=0
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
DEMO_WAIT=${DEMO_WAIT:-3600}

while (($#)); do
  case $1 in
    --work) WORK=$2; shift ;;
    --keep) KEEP=1 ;;
    --no-tests) RUN_TESTS=0 ;;
    --tests-as) TESTS_AS=$2; shift ;;
    --nextest) NEXTEST=1 ;;
    --mirror) MIRROR=$2; shift ;;
    *) echo "usage: $0 [--work DIR] [--keep] [--no-tests] [--tests-as root|sudoer] [--nextest] [--mirror URL]" >&2; exit 2 ;;
  esac
  shift
done
[[ $TESTS_AS == root || $TESTS_AS == sudoer ]] || { echo "--tests-as root|sudoer" >&2; exit 2; }

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'test-fresh-machine: FAILED: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot and mounts need it)"

WORK=$(realpath -m "$WORK")
[[ $WORK != / ]] || die "--work must be a folder of its own"
R="$WORK/root"
MARK="$WORK/.made-by-test-fresh-machine"
LOGS="$WORK/logs"
FIGURES="$WORK/figures.txt"
demo_pgid=""

figure() { printf '%-58s %s\n' "$1" "$2" | tee -a "$FIGURES" >&2; }
mmss() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# --- cleanup: every process whose root is the chroot, then the mounts ---------------------------
chroot_pids() {
  local p link
  for p in /proc/[0-9]*; do
    link=$(readlink "$p/root" 2>/dev/null) || continue
    [[ $link == "$R" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}
unmount_all() {
  local m
  for m in "$R/dev" "$R/sys" "$R/proc"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -R "$m" 2>/dev/null || umount -R -l "$m"; fi
  done
}
cleanup() {
  local status=$?
  set +e
  if [[ -n $demo_pgid ]]; then kill -INT -- "-$demo_pgid" 2>/dev/null; sleep 2; fi
  local pids
  pids=$(chroot_pids)
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086 # a list of pids
    kill -TERM $pids 2>/dev/null
    sleep 3
    pids=$(chroot_pids)
    # shellcheck disable=SC2086
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
  fi
  unmount_all
  if ((KEEP)); then
    echo "chroot kept (unmounted): $R" >&2
  elif [[ -d $R && -f $MARK ]]; then
    rm -rf --one-file-system "$R"
  fi
  echo "logs: $LOGS; figures: $FIGURES" >&2
  exit "$status"
}

# --- the host side ----------------------------------------------------------------------------
commit=$(git -C "$ROOT" rev-parse HEAD)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no) ]]; then
  echo "note: uncommitted changes in $ROOT are not tested; testing commit $commit" >&2
fi
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap on the host"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
toolchain=$(cd "$ROOT" && rustup show active-toolchain | awk '{print $1}')
[[ -d $rustup_home/toolchains/$toolchain ]] || die "no toolchain $toolchain in $rustup_home"

if [[ -e $R ]]; then
  [[ -f $MARK ]] || die "$R exists and was not made by this script: pick another --work"
  unmount_all
  rm -rf --one-file-system "$R"
fi
mkdir -p "$WORK" "$LOGS"
touch "$MARK"
free_gib=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') / 1024 / 1024))
((free_gib >= 15)) || die "$WORK has ${free_gib} GiB free; the chroot grows to about 9 GiB"
rm -f "$LOGS"/*.log
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
{
  echo "# scripts/test-fresh-machine.sh, $(date -u +%FT%TZ), commit $commit"
  echo "# host: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$FIGURES"

say "debootstrap --variant=minbase $SUITE"
t=$SECONDS
debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 ||
  { tail -n 20 "$LOGS/debootstrap.log" >&2; die "debootstrap"; }
figure "debootstrap (minbase $SUITE)" "$(mmss $((SECONDS - t)))"

# What any installed Debian has and debootstrap leaves out: the usual apt sources, a hostname
# that resolves. No service starts inside the chroot (it shares the host's network).
cat >"$R/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
host=$(hostname)
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$host" >"$R/etc/hosts"
printf '%s\n' "$host" >"$R/etc/hostname"
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod +x "$R/usr/sbin/policy-rc.d"

# The Rust toolchain, as rustup leaves it for each user (~/.rustup, ~/.cargo/bin), one copy
# of the toolchain hard-linked into every user's.
mkdir -p "$R/opt/rust-toolchain"
cp -a "$rustup_home/toolchains/$toolchain" "$R/opt/rust-toolchain/"
cp -a "$cargo_bin/rustup" "$R/opt/rust-toolchain/rustup"
if ((NEXTEST)); then cp "$(command -v cargo-nextest)" "$R/opt/rust-toolchain/"; fi
chmod -R a+rX "$R/opt/rust-toolchain"
give_rust() { # user home
  local user=$1 home=$R$2 link
  mkdir -p "$home/.rustup/toolchains" "$home/.cargo/bin"
  cp -al "$R/opt/rust-toolchain/$toolchain" "$home/.rustup/toolchains/"
  cp "$rustup_home/settings.toml" "$home/.rustup/"
  ln "$R/opt/rust-toolchain/rustup" "$home/.cargo/bin/rustup"
  for link in "$cargo_bin"/*; do
    [[ -L $link && $(readlink "$link") == rustup ]] && ln -s rustup "$home/.cargo/bin/$(basename "$link")"
  done
  if ((NEXTEST)); then ln "$R/opt/rust-toolchain/cargo-nextest" "$home/.cargo/bin/"; fi
  chroot "$R" chown "$user:$user" "$2/.rustup" "$2/.rustup/toolchains" "$2/.rustup/settings.toml" \
    "$2/.cargo" "$2/.cargo/bin"
}

# This sandbox reaches the internet through a TLS-inspecting proxy whose CA the host trusts:
# give the chroot's tools the host's bundle (the chroot's own ca-certificates is what
# scripts/lib/prereqs.sh installs, without that CA).
ca_env=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /etc/ssl/certs/ca-certificates.crt "$R/opt/host-ca.crt"
  for v in SSL_CERT_FILE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS PIP_CERT REQUESTS_CA_BUNDLE CARGO_HTTP_CAINFO GIT_SSL_CAINFO; do
    ca_env+=("$v=/opt/host-ca.crt")
  done
fi

mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --make-rslave "$R/dev"
mount --rbind /sys "$R/sys"
mount --make-rslave "$R/sys"

# Users: alice cannot install anything; bob (later) has passwordless sudo.
chroot "$R" useradd -m -s /bin/bash alice
chroot "$R" useradd -m -s /bin/bash bob

clone_for() { # user home
  git clone --quiet --no-checkout "$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir)" "$R$2/vigil"
  git -C "$R$2/vigil" -c advice.detachedHead=false checkout --quiet "$commit"
  chroot "$R" chown -R "$1:$1" "$2/vigil"
}
for u in alice:/home/alice bob:/home/bob root:/root; do
  clone_for "${u%%:*}" "${u#*:}"
  give_rust "${u%%:*}" "${u#*:}"
done

# A login-like environment: nothing from the host's but the CA bundle above.
as() { # user command...
  local user=$1 home
  shift
  if [[ $user == root ]]; then home=/root; else home=/home/$user; fi
  chroot --userspec="$user:$user" "$R" /usr/bin/env -i HOME="$home" USER="$user" LOGNAME="$user" \
    PATH="$home/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" LANG=C.UTF-8 TERM=dumb "${ca_env[@]}" /bin/bash -c "cd ~/vigil && $*"
}
as_root() { as root "$@"; }

expect_refusal() { # log expected-packages...
  local log=$1 p
  shift
  grep -q "needs Debian packages that are not installed" "$log" || die "no clear message in $log"
  grep -q "apt-get install -y" "$log" || die "$log does not give the command to install"
  for p in "$@"; do grep -qw -- "$p" "$log" || die "$log does not name $p"; done
  grep -qE "Compiling|Downloading|Updating crates" "$log" && die "$log: it built before stopping"
  return 0
}

# --- a. a user who cannot install -----------------------------------------------------------
say "a. alice (not root, no sudo) runs scripts/demo.sh and scripts/test.sh"
if as alice scripts/demo.sh </dev/null >"$LOGS/a-alice-demo.log" 2>&1; then die "demo.sh succeeded for alice"; fi
expect_refusal "$LOGS/a-alice-demo.log" gcc libc6-dev make libclang-dev ca-certificates postgresql
[[ -e $R/home/alice/vigil/target ]] && die "alice's demo.sh left a target/ behind"
if as alice scripts/test.sh </dev/null >"$LOGS/a-alice-test.log" 2>&1; then die "test.sh succeeded for alice"; fi
expect_refusal "$LOGS/a-alice-test.log" gcc make libclang-dev postgresql-15 postgresql-client-15 curl python3-venv tshark procps
if as_root VIGIL_INSTALL=never scripts/demo.sh </dev/null >"$LOGS/a-root-never.log" 2>&1; then die "VIGIL_INSTALL=never installed"; fi
expect_refusal "$LOGS/a-root-never.log" gcc libclang-dev postgresql
sed -n '/needs Debian packages/,$p' "$LOGS/a-alice-demo.log" >&2

say "a. the same once sudo is there and asks alice for a password (no terminal to ask on)"
t=$SECONDS
as_root "DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sudo" \
  >"$LOGS/a-sudo-install.log" 2>&1 || die "installing sudo in the chroot"
printf 'bob ALL=(ALL) NOPASSWD: ALL\n' >"$R/etc/sudoers.d/bob"
chmod 0440 "$R/etc/sudoers.d/bob"
if as alice scripts/demo.sh </dev/null >"$LOGS/a-alice-sudo.log" 2>&1; then die "demo.sh succeeded for alice with sudo"; fi
expect_refusal "$LOGS/a-alice-sudo.log" gcc libclang-dev postgresql
grep -q "sudo needs a password" "$LOGS/a-alice-sudo.log" || die "a-alice-sudo.log: no reason given"
echo "a: each stopped before building, naming the packages (logs: $LOGS/a-*.log)" >&2

# --- b. root runs the demo --------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
run_demo() { # log
  local log=$1 started=$SECONDS pg api line
  pg=$(free_port)
  api=$(free_port)
  setsid chroot "$R" /usr/bin/env -i HOME=/root USER=root LOGNAME=root \
    PATH="/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" LANG=C.UTF-8 TERM=dumb "${ca_env[@]}" \
    /bin/bash -c "cd ~/vigil && exec scripts/demo.sh --listen 127.0.0.1:$pg --api-listen 127.0.0.1:$api" \
    </dev/null >"$log" 2>&1 &
  demo_pgid=$!
  while ! line=$(grep -m1 "PGPASSWORD='.*' psql \"host=127.0.0.1 port=$pg " "$log"); do
    kill -0 "$demo_pgid" 2>/dev/null || { tail -n 30 "$log" >&2; die "the demo exited before its connect line ($log)"; }
    ((SECONDS - started < DEMO_WAIT)) || die "no connect line after ${DEMO_WAIT}s ($log)"
    sleep 2
  done
  demo_seconds=$((SECONDS - started))
  # That very line, with a query (the token stays in the chroot's log).
  local out
  out=$(as_root "${line#"${line%%[! ]*}"} -X -A -t -c 'SELECT count(*) FROM patients'" 2>&1) ||
    die "psql through the demo failed: $out"
  [[ $out =~ ^[0-9]+$ && $out -gt 0 ]] || die "unexpected answer through the demo: $out"
  demo_answer=$out
  kill -INT -- "-$demo_pgid"
  for _ in $(seq 60); do kill -0 "$demo_pgid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$demo_pgid" 2>/dev/null; then die "the demo did not stop on SIGINT ($log)"; fi
  wait "$demo_pgid" 2>/dev/null || true
  demo_pgid=""
}

say "b. root runs scripts/demo.sh (installs, builds, starts)"
run_demo "$LOGS/b-root-demo.log"
installed=$(sed -n 's/.*installed in \([0-9]*\) s$/\1/p' "$LOGS/b-root-demo.log" | head -n1)
[[ -n $installed ]] || die "b-root-demo.log: nothing was installed?"
figure "b. demo.sh: apt-get update + install (demo packages)" "$(mmss "$installed")"
figure "b. demo.sh: start to connect line (install + first release build)" "$(mmss "$demo_seconds")"
figure "b. demo.sh: first release build alone (about)" "$(mmss $((demo_seconds - installed)))"
echo "b: psql through the demo: SELECT count(*) FROM patients = $demo_answer; stopped on SIGINT" >&2
sed -n '/installing what/,/installed in/p' "$LOGS/b-root-demo.log" >&2

say "b. root runs scripts/demo.sh again (nothing to install, nothing to build)"
run_demo "$LOGS/b-root-demo-again.log"
grep -q "vigil setup: installing" "$LOGS/b-root-demo-again.log" && die "the second run installed something"
grep -q "Compiling" "$LOGS/b-root-demo-again.log" && die "the second run rebuilt"
figure "b. demo.sh again: start to connect line" "$(mmss "$demo_seconds")"

if ((!RUN_TESTS)); then
  echo "test-fresh-machine: a and b passed (tests skipped: --no-tests)" >&2
  exit 0
fi

# --- c. the tests -----------------------------------------------------------------------------
say "c. $TESTS_AS runs scripts/test.sh"
t=$SECONDS
if [[ $TESTS_AS == root ]]; then tester=root; else tester=bob; fi
set +e
as "$tester" scripts/test.sh </dev/null >"$LOGS/c-test.log" 2>&1
status=$?
set -e
test_seconds=$((SECONDS - t))
installed=$(sed -n 's/.*installed in \([0-9]*\) s$/\1/p' "$LOGS/c-test.log" | head -n1)
sed -n '/installing what/,/installed in/p' "$LOGS/c-test.log" >&2
grep -E '^vigil setup: (fetching|installing the OIDC)' "$LOGS/c-test.log" >&2 || true
figure "c. test.sh: apt-get update + install (the test packages)" "$(mmss "${installed:-0}")"
figure "c. test.sh: total (installs, Node.js, debug build, every test)" "$(mmss "$test_seconds")"
if grep -q '^ *Summary \[' "$LOGS/c-test.log"; then
  figure "c. nextest summary" "$(grep -m1 '^ *Summary \[' "$LOGS/c-test.log" | sed 's/^ *//')"
else
  figure "c. cargo test results (unit, integration, doc)" "$(awk '/^test result: /{p+=$4; f+=$6; n++}
    END {printf "%d passed, %d failed (%d test binaries)", p, f, n}' "$LOGS/c-test.log")"
fi
if grep -q '^through Vigil: ' "$LOGS/c-test.log"; then
  figure "c. psycopg2 suite, directly" "$(grep -m1 '^direct: ' "$LOGS/c-test.log" | sed 's/^direct: *//')"
  figure "c. psycopg2 suite, through Vigil" "$(grep -m1 '^through Vigil: ' "$LOGS/c-test.log" | sed 's/^through Vigil: *//')"
  grep -m1 'suite through Vigil: ' "$LOGS/c-test.log" >&2 || true
fi
figure "chroot size at the end (toolchain, packages, both builds)" "$(du -sh --one-file-system "$R" | cut -f1)"
((status == 0)) || { tail -n 40 "$LOGS/c-test.log" >&2; die "scripts/test.sh exited with $status ($LOGS/c-test.log)"; }
echo "test-fresh-machine: a, b and c passed" >&2
