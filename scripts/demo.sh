#!/usr/bin/env bash
# Vigil's demo command: installs what building and running the demo needs when it is missing
# (scripts/lib/prereqs.sh: a C compiler, libclang, PostgreSQL's server binaries), then builds
# Vigil (release) and runs `vigil demo`: a throwaway PostgreSQL with a synthetic EHR, and Vigil
# in front of it. Arguments go to `vigil demo` (`scripts/demo.sh --help`); relative paths in
# them, and the demo's folder (./vigil-demo), are taken from the current directory.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# shellcheck source=scripts/lib/prereqs.sh
. "$root/scripts/lib/prereqs.sh"
vigil_prereqs demo

if [[ ! -x ${CARGO_TARGET_DIR:-$root/target}/release/vigil ]]; then
  echo "vigil setup: building Vigil (release); the first build takes a while (see README.md)" >&2
fi
exec cargo run --manifest-path "$root/Cargo.toml" --release -- demo "$@"
