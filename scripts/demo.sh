#!/usr/bin/env bash
# Vigil's demo command: installs what building and running the demo needs when it is missing
# (scripts/lib/prereqs.sh: a C compiler, libclang, PostgreSQL's server binaries), then builds
# Vigil (release) and runs `vigil demo`: a throwaway PostgreSQL with a synthetic EHR, and Vigil
# in front of it. Arguments go to `vigil demo` (see `scripts/demo.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/prereqs.sh
. scripts/lib/prereqs.sh
vigil_prereqs demo

if [[ ! -x ${CARGO_TARGET_DIR:-target}/release/vigil ]]; then
  echo "vigil setup: building Vigil (release); the first build takes a while (README.md says how long)" >&2
fi
exec cargo run --release -- demo "$@"
